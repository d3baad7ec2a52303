"""`searchrl export`: a run's checkpoint as a Hugging Face folder that plain transformers / PEFT load with
the run's logits, that `searchrl eval model.path=DIR` evaluates exactly like `--checkpoint RUN_DIR`, with a
card and protocol file rendered from the run; bad requests get a one-line error and exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from searchrl.cli import app
from searchrl.config import config_from_dict, load_config, save_config
from searchrl.data.protocols import PROTOCOLS
from searchrl.export.card import eval_overrides, protocol_record
from searchrl.models import load_policy
from searchrl.rollout.prompts import prompt_ids
from searchrl.trainer.checkpoint import TrainState, load_trained_policy, save_checkpoint
from searchrl.trainer.lora import add_lora
from searchrl.types import Passage
from tolerances import GRAD_REL_TO_MAX

IDS = torch.tensor([[1, 17, 523, 9001, 42, 7, 2048, 300]])


def make_run(run_dir: Path, model_dir: Path, lora_r: int, steps: tuple[int, ...] = (0, 3)) -> None:
    """A run folder as training leaves it: config.yaml and a checkpoint per step, each with its own
    seeded perturbation of the trainable weights (LoRA B, or every weight), so no step is a no-op."""
    cfg = config_from_dict(
        {
            "model": {"path": str(model_dir)},
            "output_dir": str(run_dir),
            "train": {"lora_r": lora_r, "lora_alpha": 8, "steps": max(steps), "lr": 3e-5},
            "rollout": {"protocol": "r1_searcher", "max_new_tokens": 6, "max_turns": 2},
            "retrieval": {"topk": 2},
        }
    )
    save_config(cfg, run_dir)
    model, _ = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    policy = add_lora(model, lora_r, 8, cfg.seed) if lora_r else model
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.0)
    gen = torch.Generator().manual_seed(1)
    for step in steps:
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if p.requires_grad and (not lora_r or "lora_B" in name):
                    p.add_(0.2 * torch.randn(p.shape, generator=gen))
        save_checkpoint(run_dir, TrainState(step=step), {"policy": policy}, {"policy": opt})


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits[0]


def assert_same_logits(what: str, a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to fp32 rounding (a merged weight sums W + BA once; the adapter adds BAx at run time),
    measured against the largest logit as tests/tolerances.py does."""
    scale, diff = float(a.abs().max()), float((a - b).abs().max())
    assert diff <= GRAD_REL_TO_MAX * scale, f"{what}: max |diff| {diff:.3g} > {GRAD_REL_TO_MAX:g} x {scale:.3g}"


def export(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["export", *map(str, args)])


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("lora-run")
    make_run(run, tiny_model_dir, lora_r=4)
    (run / "eval").mkdir()
    (run / "eval" / "paired.json").write_text(json.dumps({"metric": "em"}))  # not a results table: skipped
    (run / "eval" / "agent_rl.json").write_text(
        json.dumps({"1hop": {"n": 2, "em": 0.5, "f1": 0.5, "cover_em": 0.5, "searches": 1, "answered": 1}})
    )
    return run


@pytest.fixture(scope="module")
def exported(lora_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exports")
    for kind in ("merged", "adapter"):
        res = export(lora_run, "--out", out / kind, f"--{kind}")
        assert res.exit_code == 0, res.output
        assert f"{kind}, checkpoint step 3" in res.output
    return {"merged": out / "merged", "adapter": out / "adapter"}


def test_exports_load_outside_searchrl_with_the_runs_logits(
    lora_run: Path, exported: dict[str, Path], tiny_model_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, policy, _, step = load_trained_policy(lora_run)
    assert step == 3
    ran = logits(policy)
    base = logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    assert float((ran - base).abs().max()) > 1e-2 * float(ran.abs().max()), "the adapter is a no-op; proves nothing"

    merged_dir, adapter_dir = exported["merged"], exported["adapter"]
    assert (merged_dir / "model.safetensors").is_file() and (merged_dir / "generation_config.json").is_file()
    assert (merged_dir / "tokenizer.json").is_file() and not (merged_dir / "adapter_config.json").exists()
    assert_same_logits("merged", ran, logits(AutoModelForCausalLM.from_pretrained(merged_dir)))

    assert (adapter_dir / "adapter_model.safetensors").is_file()
    recorded = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(recorded) == tiny_model_dir.resolve()
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(recorded), adapter_dir)
    assert_same_logits("adapter (peft)", ran, logits(plain))
    # searchrl's own model.path= loading: the adapter folder loads its base and merges the adapter in
    via_searchrl, _ = load_policy(str(adapter_dir))
    assert not hasattr(via_searchrl, "peft_config")
    assert_same_logits("adapter (model.path)", ran, logits(via_searchrl))


def test_foreign_adapter_folder_loads_from_peft_record(exported: dict[str, Path], tmp_path: Path) -> None:
    """An adapter folder without searchrl's record (e.g. from another tool) loads the base PEFT names."""
    foreign = tmp_path / "foreign"
    shutil.copytree(exported["adapter"], foreign)
    (foreign / "searchrl_export.json").unlink()
    assert_same_logits(
        "foreign adapter", logits(load_policy(str(exported["adapter"]))[0]), logits(load_policy(str(foreign))[0])
    )


@pytest.mark.parametrize("kind", ["merged", "adapter"])
def test_eval_on_exported_folder_gives_the_runs_rows(
    kind: str, lora_run: Path, exported: dict[str, Path], tmp_path: Path
) -> None:
    record = json.loads((exported[kind] / "searchrl_export.json").read_text())
    assert "rollout.protocol=r1_searcher" in record["overrides"] and "retrieval.topk=2" in record["overrides"]
    common = ["data.max_examples=3", "--dataset", "world:default"]
    runner = CliRunner()
    res = runner.invoke(app, ["eval", *common, "--checkpoint", str(lora_run), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["eval", f"model.path={exported[kind]}", *record["overrides"], *common, "--out", str(tmp_path / "dir")],
    )
    assert res.exit_code == 0, res.output
    rows = [(tmp_path / arm / "agent.jsonl").read_text().splitlines() for arm in ("run", "dir")]
    assert len(rows[0]) == 3 and rows[0] == rows[1]


def test_card_and_protocol_file_are_written_from_the_run(exported: dict[str, Path], tiny_model_dir: Path) -> None:
    card = (exported["adapter"] / "README.md").read_text()
    protocol = json.loads((exported["adapter"] / "searchrl_protocol.json").read_text())
    assert card.startswith("---\nlibrary_name: peft\n")
    assert "searchrl_protocol.json" in card and "Protocol `r1_searcher`" in card
    assert protocol["prompt_template"] in card and "<|begin_of_query|>" in card
    assert "(1) Title 1\nText of passage 1.\n(2) Title 2" in card  # the injected-document block, rendered
    assert "- search: `<|begin_of_query|>` ... `<|end_of_query|>`" in card
    assert "retriever `bm25`, top-k 2" in card and "LoRA r=4, alpha=8" in card and "lr 3e-05" in card
    assert "| agent_rl | 1hop | 2 | 0.500 |" in card
    assert str(tiny_model_dir.resolve()) in card and "rollout.protocol=r1_searcher" in card
    assert (exported["merged"] / "README.md").read_text().startswith("---\nlibrary_name: transformers\n")
    assert {f.stat().st_mode & 0o777 for f in exported["merged"].iterdir()} == {0o644}  # shareable, not owner-only


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_record_reproduces_prompt_and_documents(name: str, smol_tokenizer: Any) -> None:
    rec, protocol = protocol_record(name, smol_tokenizer), PROTOCOLS[name]
    question = "Where was Kanka Drourteim born?"
    text = rec["prompt_template"].replace("{question}", question)
    ids = smol_tokenizer(text, add_special_tokens=rec["add_special_tokens"])["input_ids"]
    assert ids == prompt_ids(smol_tokenizer, protocol, question)
    passages = [Passage(id=str(i), title=f"T{i}", text=f"body {i}") for i in range(1, 4)]
    docs = rec["passage_separator"].join(
        rec["passage_template"].format(i=i, title=p.title, text=p.text) for i, p in enumerate(passages, 1)
    )
    assert rec["information_template"].replace("{passages}", docs) == protocol.wrap_information(
        protocol.format_passages(passages)
    )


def test_eval_overrides_rebuild_the_runs_agent_settings() -> None:
    cfg = config_from_dict(
        {
            "model": {"path": "elsewhere", "dtype": "bfloat16"},
            "rollout": {"protocol": "r1_searcher_demo", "temperature": 0.7, "max_turns": 3},
            "retrieval": {"kind": "http", "url": ["http://a:1/retrieve", "http://b:2/retrieve"], "topk": 5},
            "train": {"lr": 1e-6},
        }
    )
    rebuilt = load_config(None, eval_overrides(cfg))
    assert rebuilt.rollout == cfg.rollout and rebuilt.retrieval == cfg.retrieval
    assert rebuilt.model.dtype == "bfloat16" and rebuilt.model.path != "elsewhere"  # model.path: the folder's


def test_full_finetune_exports_whole_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    make_run(tmp_path / "run", tiny_model_dir, lora_r=0, steps=(0, 2))
    assert export(tmp_path / "run", "--out", tmp_path / "step0", "--step", "0").exit_code == 0
    _, policy, _, _ = load_trained_policy(tmp_path / "run")
    from_step0 = logits(AutoModelForCausalLM.from_pretrained(tmp_path / "step0"))
    assert float((from_step0 - logits(policy)).abs().max()) > 0  # --step 0 is not the latest (step 2)
    assert export(tmp_path / "run", "--out", tmp_path / "latest").exit_code == 0
    assert torch.equal(logits(AutoModelForCausalLM.from_pretrained(tmp_path / "latest")), logits(policy))
    res = export(tmp_path / "run", "--out", tmp_path / "a", "--adapter")
    assert res.exit_code == 2 and "no adapter" in res.output


def one_line_error(res: Any, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and line.startswith("error: "), res.output
    for needle in needles:
        assert needle in line, line


def test_bad_requests_get_one_line_errors(lora_run: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    empty_run = tmp_path / "fresh"
    save_config(config_from_dict({"model": {"path": str(tiny_model_dir)}}), empty_run)
    one_line_error(export(empty_run, "--out", tmp_path / "x"), "no checkpoint")
    one_line_error(export(tmp_path / "nowhere", "--out", tmp_path / "x"), "not a run folder")
    one_line_error(export(lora_run, "--out", tmp_path / "x", "--step", "7"), "no checkpoint of step 7", "0, 3")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    one_line_error(export(lora_run, "--out", busy), "not empty", "--force")
    assert (busy / "keep.txt").read_text() == "mine" and not (tmp_path / "x").exists()
    one_line_error(export(lora_run, "--out", lora_run, "--force"), "would replace the run folder")
    assert export(lora_run, "--out", busy, "--force", "--step", "0").exit_code == 0
    assert not (busy / "keep.txt").exists() and (busy / "model.safetensors").is_file()


def test_ask_takes_an_exported_folder_with_its_runs_settings(lora_run: Path, exported: dict[str, Path]) -> None:
    """`searchrl ask model.path=DIR` answers as `--checkpoint RUN_DIR` does: the folder's record brings the
    run's protocol (r1_searcher, not the default search_r1), budgets and top-k."""
    runner, question = CliRunner(), "Who founded Quillon?"
    run = runner.invoke(app, ["ask", question, "--checkpoint", str(lora_run)])
    folder = runner.invoke(app, ["ask", question, f"model.path={exported['merged']}"])
    assert run.exit_code == 0 and folder.exit_code == 0, run.output + folder.output

    def trace(output: str) -> list[str]:  # without the header line, which names where the model came from
        return [line for line in output.splitlines() if "checkpoint step" not in line]

    assert "(checkpoint step 3, bm25 retriever)" in folder.output
    assert trace(run.output) == trace(folder.output) and "answer:" in folder.output  # the same trace and answer
    bare = runner.invoke(app, ["ask", question, f"model.path={exported['merged']}", "rollout.protocol=search_r1"])
    assert bare.exit_code == 0 and trace(bare.output) != trace(folder.output)  # the command's overrides win


def test_card_names_the_sft_warm_start_of_a_demo_or_an_experiment_arm(tmp_path: Path) -> None:
    from searchrl.export.card import sft_record

    cfg = config_from_dict({})
    demo = tmp_path / "demo"
    demo.mkdir()
    assert sft_record(demo, cfg) == 0
    (demo / "sft.json").write_text(json.dumps({"losses": [2.1, 0.3], "examples": 56}))
    assert sft_record(demo, cfg) == 56  # searchrl demo: the run folder's own record
    out = tmp_path / "exp"
    (out / "warm_start").mkdir(parents=True)
    (out / "warm_start" / "sft.json").write_text(json.dumps({"losses": [1.0], "examples": 40}))
    arms = [{"name": "grpo", "init": "warm_start"}, {"name": "from_base", "init": "base"}]
    (out / "spec.yaml").write_text(yaml.safe_dump({"name": "x", "arms": arms}))
    for arm, want in (("grpo", 40), ("from_base", 0)):
        run = out / "arms" / arm / "seed0"
        run.mkdir(parents=True)
        assert sft_record(run, cfg) == want, arm
