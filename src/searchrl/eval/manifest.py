"""What produced a set of eval rows, and whether two sets may be compared.

Every ``<label>.jsonl`` of eval rows (and its ``<label>.json`` table) gets a ``<label>.manifest.json``
beside it (:func:`searchrl.eval.run.write_results`): the corpus and index fingerprints, the retriever
kind and the parameters that shape its results, the protocol and a hash of the prompt template, each
metric's normalization, the question set, the model and checkpoint, the seed and the searchrl version.
A separate file rather than a key inside the table, so that every reader of tables and rows stays as
it was and rows written before manifests existed still load.

``searchrl compare`` and the experiment findings compare arms only when the settings a number depends
on, besides the policy, are the same (:meth:`Manifest.compared`): corpus, index, retriever parameters,
the compared metric's normalization and the question set. Protocol, prompt, model, checkpoint and seed
are what arms are meant to differ in; they are recorded and shown, never compared. Rows without a
manifest are compared with a note that their settings were not checked (:data:`NO_MANIFEST`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchrl.data.protocols import BASELINE_INSTRUCTIONS, PROTOCOLS, TagProtocol
from searchrl.retrieval.ondisk.index import MANIFEST as INDEX_MANIFEST
from searchrl.retrieval.ondisk.index import passages_fingerprint
from searchrl.types import QAExample
from searchrl.utils import atomic_write_text, file_fingerprint

if TYPE_CHECKING:
    from searchrl.config import Config, RetrievalConfig

__all__ = [
    "BASE",
    "NORMALIZATION",
    "NO_MANIFEST",
    "REMOTE",
    "SUFFIX",
    "Manifest",
    "ManifestMismatch",
    "check_comparable",
    "checkpoint_hash",
    "differences",
    "eval_manifest",
    "load_manifest",
    "manifest_path",
    "manifest_table",
    "prompt_hash",
    "questions_hash",
    "retrieval_source",
    "retriever_params",
    "save_manifest",
    "settings_note",
]

SUFFIX = ".manifest.json"
NO_MANIFEST = "no manifest"
BASE = "base"  # the checkpoint of rows from the model at model.path, untrained
REMOTE = "remote"  # the corpus and index behind an http or web retriever, which this process cannot see

# How each row metric normalizes answers (searchrl.rewards.normalize; paired.ROW_METRICS), so that rows
# scored under another definition are told apart. tests/test_manifest.py pins the keys.
NORMALIZATION: dict[str, str] = {
    "em": "squad",
    "f1": "squad, hotpotqa closed-class rule",
    "cover_em": "squad, contiguous word span",
    "subem": "squad, search-r1 character substring",
    "r1_cover_em": "r1-searcher",
    "searched": "at least one search",
    "searches": "searches per question (a count)",
}

_COUNTED = ("searched", "searches")

# the retrieval fields (config.RetrievalConfig) that change what a retriever of each kind returns
_RETRIEVER_FIELDS: dict[str, tuple[str, ...]] = {
    "bm25": ("topk",),
    "dense": ("topk", "encoder", "faiss", "nprobe", "ef_search", "refine"),
    "hybrid": ("topk", "encoder", "faiss", "nprobe", "ef_search", "refine", "rrf_k", "hybrid_depth"),
    "http": ("topk",),
    "web": ("topk", "web_provider"),
}


@dataclass(frozen=True)
class Manifest:
    corpus: str  # sha256 of the passages (ids, titles, texts, in order); REMOTE for http/web
    index: str  # sha256 of the index folder's manifest.json, "in memory: <retriever>", or REMOTE
    retriever: dict[str, Any]  # kind, topk and the kind's search parameters (retrieval.*)
    protocol: str  # rollout.protocol
    method: str  # direct | cot | rag | agent
    prompt: str  # sha256 of the method's prompt template (instruction, corrective message, passage style)
    metrics: dict[str, str]  # row metric -> its normalization (NORMALIZATION)
    questions: str  # sha256 of the question set (dataset, id, question, golds; order-free)
    n_questions: int
    model: str  # model.path
    checkpoint: str  # sha256 of the evaluated checkpoint's policy.safetensors, or BASE
    seed: int
    version: str  # searchrl's
    decoding: str = "greedy"  # or "avg@<k> t=<temperature>": sampled answers (manifests before it: greedy)

    def compared(self, metric: str) -> dict[str, Any]:
        """The settings two arms must share to be compared on ``metric``, by name."""
        out: dict[str, Any] = {"corpus": self.corpus, "index": self.index}
        out |= {f"retriever.{k}": v for k, v in self.retriever.items()}
        if metric not in _COUNTED:  # a count of searches normalizes nothing: older manifests lack the entry
            out[f"metric.{metric}"] = self.metrics.get(metric, "unknown")
        out["questions"] = self.questions
        out["decoding"] = self.decoding
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n != "decoding" and (not isinstance(data, dict) or n not in data)]
        if missing:
            raise ValueError(f"an eval manifest needs {', '.join(missing)}")
        return cls(**{n: data[n] for n in names if n in data})


class ManifestMismatch(ValueError):
    """Arms produced with different retrieval, metric or question settings; ``differences`` names each."""

    def __init__(self, diffs: list[str]) -> None:
        self.differences = diffs
        lines = "\n".join(f"  {d}" for d in diffs)
        super().__init__(f"the arms were not produced with the same retrieval, metric and questions:\n{lines}")


# -- building ---------------------------------------------------------------------------------------------
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def retriever_params(cfg: RetrievalConfig) -> dict[str, Any]:
    """``kind`` and the fields of the retrieval section that shape what that kind returns."""
    return {"kind": cfg.kind} | {name: getattr(cfg, name) for name in _RETRIEVER_FIELDS[cfg.kind]}


def _source(retriever: Any) -> tuple[str, str]:
    """(corpus, index) of one retriever object. A passage store (an index folder's) carries the
    passages' fingerprint and lies beside the folder's manifest; passages held in memory are
    fingerprinted here, the same digest, so one corpus has one fingerprint either way."""
    passages = getattr(retriever, "passages", None)
    name = type(retriever).__name__
    stored = getattr(passages, "fingerprint", None)
    if isinstance(stored, str):
        folder_manifest = Path(passages.path).parent / INDEX_MANIFEST  # type: ignore[union-attr]
        return stored, file_fingerprint(folder_manifest) if folder_manifest.is_file() else f"store: {name}"
    if isinstance(passages, list):
        stemmed = " (stemmed)" if getattr(retriever, "stemmed", False) else ""
        return passages_fingerprint(passages), f"in memory: {name}{stemmed}"
    return REMOTE, f"{REMOTE}: {name}"


def retrieval_source(retrievers: Sequence[Any]) -> tuple[str, str]:
    """(corpus, index) of the retrievers rows were produced with; several (one per dataset with
    ``--own-corpus``) combine into one fingerprint of their corpora and a list of their indexes."""
    parts = [_source(r) for r in {id(r): r for r in retrievers}.values()]
    if len(parts) == 1:
        return parts[0]
    return _sha("\n".join(c for c, _ in parts)), "; ".join(dict.fromkeys(i for _, i in parts))


def prompt_hash(method: str, protocol: TagProtocol) -> str:
    """sha256 of what the method's prompt is made from: the agent's protocol text, or the baseline's."""
    if method in ("agent", "rag_agent"):
        parts = [protocol.instruction, protocol.corrective_message, protocol.passage_style, str(protocol.chat)]
        parts += [method] if method != "agent" else []
    else:
        parts = [BASELINE_INSTRUCTIONS[method], protocol.passage_style if method == "rag" else ""]
    return _sha("\x1e".join(parts))


def questions_hash(examples: Sequence[QAExample]) -> str:
    """sha256 over every question's dataset, id, text and golds, sorted by id (row order does not matter)."""
    items = sorted(f"{e.dataset}\x1f{e.id}\x1f{e.question}\x1f{chr(0x1D).join(e.answers)}" for e in examples)
    return _sha("\x1e".join(items))


def checkpoint_hash(checkpoint: str | Path | None) -> str:
    """sha256 of ``<checkpoint>/policy.safetensors``; BASE when no checkpoint was evaluated."""
    if checkpoint is None:
        return BASE
    return file_fingerprint(Path(checkpoint) / "policy.safetensors")


def searchrl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("searchrl")
    except PackageNotFoundError:
        from searchrl import __version__

        return __version__


def eval_manifest(
    cfg: Config,
    method: str,
    examples: Sequence[QAExample],
    retrievers: Sequence[Any],
    checkpoint: str | Path | None,
    decoding: str = "greedy",
) -> Manifest:
    """The manifest of ``method``'s rows on ``examples``, evaluated under ``cfg`` (retrieval, protocol,
    model, seed) with ``retrievers`` (the objects searched; one per dataset with ``--own-corpus``) and
    the policy of ``checkpoint`` (a ``ckpt-<step>`` folder; None = the base model)."""
    corpus, index = retrieval_source(retrievers)
    return Manifest(
        corpus=corpus,
        index=index,
        retriever=retriever_params(cfg.retrieval),
        protocol=cfg.rollout.protocol,
        method=method,
        prompt=prompt_hash(method, PROTOCOLS[cfg.rollout.protocol]),
        metrics=dict(NORMALIZATION),
        questions=questions_hash(examples),
        n_questions=len(examples),
        model=cfg.model.path,
        checkpoint=checkpoint_hash(checkpoint),
        seed=cfg.seed,
        version=searchrl_version(),
        decoding=decoding,
    )


# -- files ------------------------------------------------------------------------------------------------
def manifest_path(rows_path: str | Path) -> Path:
    """``eval/agent.jsonl`` -> ``eval/agent.manifest.json``."""
    path = Path(rows_path)
    return path.with_name(path.name.removesuffix(".jsonl").removesuffix(".json") + SUFFIX)


def save_manifest(rows_path: str | Path, manifest: Manifest) -> Path:
    path = manifest_path(rows_path)
    atomic_write_text(path, manifest.to_json())
    return path


def load_manifest(rows_path: str | Path) -> Manifest | None:
    """The manifest beside a rows file; None when there is none (rows from before manifests). A corrupt
    one is a ValueError naming the file."""
    path = manifest_path(rows_path)
    if not path.is_file():
        return None
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable eval manifest ({exc})") from None


# -- comparing --------------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    is_hash = len(text) == 64 and all(c in "0123456789abcdef" for c in text)
    return text[:12] if is_hash else text


def differences(manifests: Mapping[str, Manifest | None], metric: str) -> list[str]:
    """One line per compared setting the labelled manifests disagree on, each value with the labels
    that have it, e.g. ``retriever.topk: 3 (warm/seed0), 5 (grpo/seed0)``. Labels without a manifest
    are left out (see :func:`settings_note`)."""
    present = {label: m.compared(metric) for label, m in manifests.items() if m is not None}
    keys = list(dict.fromkeys(k for c in present.values() for k in c))
    lines = []
    for key in keys:
        holders: dict[str, list[str]] = {}
        for label, settings in present.items():
            holders.setdefault(_show(settings.get(key, "(not set)")), []).append(label)
        if len(holders) > 1:
            lines.append(f"{key}: " + ", ".join(f"{v} ({', '.join(ls)})" for v, ls in holders.items()))
    return lines


def check_comparable(manifests: Mapping[str, Manifest | None], metric: str, allow_mismatch: bool = False) -> list[str]:
    """The :func:`differences`; raises :class:`ManifestMismatch` when there are any, unless allowed."""
    diffs = differences(manifests, metric)
    if diffs and not allow_mismatch:
        raise ManifestMismatch(diffs)
    return diffs


def settings_note(manifests: Mapping[str, Manifest | None], diffs: Sequence[str]) -> str:
    """Markdown printed above a comparison: the settings that differ and the rows without a manifest."""
    lines = []
    if diffs:
        lines += ["**Settings differ** (compared anyway):", *(f"- {d}" for d in diffs), ""]
    unchecked = [label for label, m in manifests.items() if m is None]
    if unchecked:
        lines += [f"{NO_MANIFEST}: {', '.join(unchecked)} (settings not checked)", ""]
    return "\n".join(lines) + ("\n" if lines else "")


def manifest_table(manifests: Mapping[str, Manifest | None]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of text cells, one row per label: what produced each set of rows."""
    header = ["rows", "corpus", "index", "retriever", "protocol (method) prompt", "questions", "model"]
    header += ["checkpoint", "seed", "searchrl"]
    rows = []
    for label, m in manifests.items():
        if m is None:
            rows.append([label, NO_MANIFEST] + ["–"] * (len(header) - 2))
            continue
        retriever = " ".join(f"{k}={_show(v)}" for k, v in m.retriever.items())
        questions = f"{m.n_questions} ({_show(m.questions)})"
        prompt = f"{m.protocol} ({m.method}) {_show(m.prompt)}"
        rows.append([label, _show(m.corpus), _show(m.index), retriever, prompt, questions, m.model])
        rows[-1] += [_show(m.checkpoint), str(m.seed), m.version]
    return header, rows
