"""Encoding throughput of the offline encoder (all-MiniLM-L6-v2) on this CPU: passages per second.

Encodes ``--n`` real wiki-18 passages (title and text, the FlashRAG sample in ``../shared/data/raw``)
with :func:`searchrl.retrieval.dense.encoder.encode` (batches of 64, longest first) after a warm-up batch, on
the CPU with torch's default thread count. Usage: python benchmarks/retrieval_encode_throughput.py
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from retrieval_scale_common import RAW
from searchrl.retrieval.corpus import load_corpus
from searchrl.retrieval.dense.encoder import DEFAULT_ENCODER, encode, load_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    passages = load_corpus(RAW / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")[: args.n]
    texts = [f"{p.title}\n{p.text}" for p in passages]
    model = load_encoder(DEFAULT_ENCODER, device="cpu")
    encode(model, texts[:64])
    start = time.perf_counter()
    encode(model, texts, batch_size=64)
    seconds = time.perf_counter() - start
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(json.dumps({"passages": len(texts), "mean_words": round(words, 1), "seconds": round(seconds, 1),
                      "passages_per_s": round(len(texts) / seconds, 1), "torch_threads": torch.get_num_threads()}))  # fmt: skip


if __name__ == "__main__":
    main()
