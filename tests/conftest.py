"""Shared fixtures: the real data folder beside the repo, the offline tokenizer, a tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("SEARCHRL_RAW_DATA", REPO.parent / "shared" / "data" / "raw"))


@pytest.fixture(scope="session")
def raw_data() -> Path:
    """``../shared/data/raw`` (real QA sets and corpora). CI always has it; a bare clone skips these tests."""
    if not RAW.is_dir():
        pytest.skip(f"real data folder not found at {RAW} (set SEARCHRL_RAW_DATA)")
    return RAW


@pytest.fixture(scope="session")
def smol_tokenizer():  # type: ignore[no-untyped-def]
    """The real SmolLM2 tokenizer (converted once into the cache)."""
    from searchrl.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_lm(smol_tokenizer):  # type: ignore[no-untyped-def]
    """A 2-layer random Llama over the real tokenizer's vocabulary."""
    from searchrl.models import tiny_model

    return tiny_model(smol_tokenizer, layers=2, hidden=64, heads=4, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(smol_tokenizer, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A 1-layer random Llama saved as a model folder, for `searchrl ...` subprocesses (model.path=...)."""
    from searchrl.models import tiny_model

    path = tmp_path_factory.mktemp("tiny-model")
    tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path
