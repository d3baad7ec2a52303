#!/usr/bin/env bash
# Direct / RAG / trained agent on real data with SmolLM2-135M (the numbers in docs/results.md).
# HotpotQA and MuSiQue retrieve from their own paragraphs (BM25 built on the fly); Bamboogle from the
# 1,000-passage Wikipedia sample. Usage: scripts/eval_real.sh RUN_DIR [N]   (RUN_DIR: a trained run,
# e.g. runs/demo; N questions per dataset, default 50). Needs ../shared/data/raw beside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?usage: scripts/eval_real.sh RUN_DIR [N]}
N=${2:-50}
RAW=${SEARCHRL_RAW_DATA:-../shared/data/raw}
OUT=${OUT:-runs/real}
BIN=${BIN:-.venv/bin/searchrl}
HOTPOT=$RAW/hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json
MUSIQUE=$RAW/musique/OSU-NLP-Group__HippoRAG/musique_train.json
BAMBOO=$RAW/bamboogle/RUCAIBox__R1-Searcher/bamboogle.jsonl
WIKI=$RAW/wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl

for ds in "$HOTPOT" "$MUSIQUE"; do
  name=$(basename "$ds" .json)
  $BIN eval --dataset "$ds" --own-corpus --method direct --method rag --out "$OUT/$name/base" data.max_examples="$N"
  $BIN eval --dataset "$ds" --own-corpus --method rag --method agent --checkpoint "$RUN" --out "$OUT/$name/trained" \
    data.max_examples="$N"
done
$BIN eval --dataset "$BAMBOO" --method direct --method rag --out "$OUT/bamboogle/base" \
  retrieval.corpus="$WIKI" data.max_examples="$N"
$BIN eval --dataset "$BAMBOO" --method rag --method agent --checkpoint "$RUN" --out "$OUT/bamboogle/trained" \
  retrieval.corpus="$WIKI" data.max_examples="$N"
