"""Evaluation subcommands: `eval`, `compare`, `ask`, `report`, `demo`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from searchrl.cli.common import ConfigOpt, Overrides, error_console, progress_bar, resolve, retriever_for


def eval_cmd(
    config: ConfigOpt = None,
    overrides: Overrides = None,
    method: Annotated[list[str] | None, typer.Option(help="direct | cot | rag | agent (repeatable)")] = None,
    dataset: Annotated[
        list[str] | None, typer.Option(help="QA file or world:<name>[:split] (repeatable); default data.eval")
    ] = None,
    own_corpus: Annotated[
        bool, typer.Option(help="Retrieve from each dataset's own paragraphs (BM25 built on the fly).")
    ] = False,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="Evaluate the policy of this run folder (its latest checkpoint); repeat to compare runs."),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Metric of the paired comparison: em | f1 | cover_em | subem | r1_cover_em")
    ] = "em",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % intervals.")] = 2000,
    bootstrap_seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for <method>.jsonl, <method>.json, <method>.manifest.json and results.md")
    ] = Path("runs/eval"),
    judge_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible API root for an LLM judge, e.g. http://127.0.0.1:8000/v1")
    ] = None,
    judge_model: Annotated[str, typer.Option(help="Model name sent to the judge endpoint.")] = "judge",
    judge_key_env: Annotated[str, typer.Option(help="Environment variable with the judge's API key.")] = (
        "OPENAI_API_KEY"
    ),
) -> None:
    """Evaluate methods on datasets (test split for worlds), greedy; one table per method, one row per dataset.

    A self-contained benchmark is one command, e.g.
    ``searchrl eval --dataset hotpot_dev.jsonl --own-corpus --method rag --method agent``.
    Two or more arms (methods x checkpoints) also get ``paired.md``: each arm's score per dataset and
    question type with a 95 % bootstrap interval, and every arm's paired difference from the first arm
    with its interval and the questions it fixed and broke. Every arm's rows get a manifest beside them
    (``<label>.manifest.json``: corpus, index, retriever, protocol and prompt, metrics, questions, model,
    checkpoint, seed, version); settings that differ between arms are printed with the comparison.
    """
    import searchrl.eval.run as eval_run
    from searchrl.data.qa import DataError
    from searchrl.data.sources import load_source
    from searchrl.eval.manifest import Manifest, differences, eval_manifest, settings_note
    from searchrl.eval.paired import compare_arms, comparison_json, comparison_markdown
    from searchrl.eval.run import METHODS, markdown_table, write_results
    from searchrl.models import load_policy
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.corpus import CorpusError, passages_from_qa_file
    from searchrl.rewards.normalize import METRICS
    from searchrl.rollout.build import build_rollout
    from searchrl.rollout.hf import HFGenerator
    from searchrl.trainer.checkpoint import latest_checkpoint, load_trained_policy
    from searchrl.utils import atomic_write_text

    console = error_console()
    methods = method or ["agent"]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        console.print(f"[red]unknown method {bad}; valid: {', '.join(METHODS)}[/red]")
        raise typer.Exit(2)
    if metric not in METRICS:
        console.print(f"[red]unknown metric '{metric}'; valid: {', '.join(METRICS)}[/red]")
        raise typer.Exit(2)
    runs: list[Path | None] = list(checkpoint) if checkpoint else [None]
    if len({(r.name if r else None) for r in runs}) < len(runs):
        console.print("[red]two --checkpoint folders have the same name; arms are labelled by folder name[/red]")
        raise typer.Exit(2)
    # (label suffix, config, policy, tokenizer, checkpoint folder): each run's own
    policies: list[tuple[str, Any, Any, Any, Path | None]] = []
    for run_dir in runs:
        if run_dir is not None:
            try:
                cfg, model, tok, step = load_trained_policy(run_dir, overrides)
            except FileNotFoundError as err:
                console.print(f"[red]{err}[/red]")
                raise typer.Exit(2) from None
            console.print(f"policy: {run_dir} (checkpoint step {step})")
        else:
            cfg = resolve(config, overrides)
            model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
        suffix = f"@{run_dir.name}" if run_dir is not None and len(runs) > 1 else ""
        policies.append((suffix, cfg, model, tok, latest_checkpoint(run_dir) if run_dir is not None else None))
    if not dataset and len({p[1].data.eval for p in policies}) > 1:
        console.print("[red]the runs name different data.eval sets; give --dataset to compare them[/red]")
        raise typer.Exit(2)
    specs = dataset or [policies[0][1].data.eval]
    own: dict[str, Any] = {}  # spec -> the dataset's own BM25 (--own-corpus)
    shared: dict[str, Any] = {}  # a run's retrieval settings (as JSON) -> its retriever, built once
    try:
        sets = {spec: load_source(spec, "test", policies[0][1].data.max_examples) for spec in specs}
        if own_corpus:
            own = {spec: BM25Retriever.build(passages_from_qa_file(spec)) for spec in specs}
        for _, cfg, _, _, _ in policies:
            key = cfg.retrieval.model_dump_json()
            if not own_corpus and key not in shared:
                shared[key] = retriever_for(cfg)
    except (DataError, CorpusError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    judge = None
    if judge_url is not None:
        from searchrl.eval.judge import JudgeConfig, LLMJudge, with_verdicts

        judge = LLMJudge(JudgeConfig(base_url=judge_url, model=judge_model, api_key_env=judge_key_env))
    tables = {}
    arms: dict[str, list[list[Any]]] = {}
    manifests: dict[str, Manifest] = {}
    for suffix, cfg, model, tok, ckpt in policies:
        searched = [own[spec] if own_corpus else shared[cfg.retrieval.model_dump_json()] for spec in sets]
        for m in methods:
            label = m + suffix
            rows: list[Any] = []
            waits: dict[str, list[float]] = {}  # search latency per question, for the table's percentiles
            for (spec, examples), retriever in zip(sets.items(), searched, strict=True):
                engine = build_rollout(cfg, HFGenerator(model, tok), retriever, tok)
                with progress_bar(console, f"{label} {Path(spec).name}", len(examples)) as advance:
                    got = eval_run.evaluate(m, examples, engine, progress=advance, waits=waits)  # type: ignore[arg-type]
                rows.extend(got)
            if judge is not None:
                rows, failure = with_verdicts(rows, judge)
                if failure is not None:
                    console.print(f"[yellow]LLM judge failed; results written without it:[/yellow] {failure}")
            # one dataset: rows per question type (1hop/2hop, bridge/comparison); several: rows per dataset
            by = (lambda r: r.group) if len(sets) == 1 else (lambda r: r.dataset)
            everything = [ex for examples in sets.values() for ex in examples]
            manifests[label] = eval_manifest(cfg, m, everything, searched, ckpt)
            tables[label] = write_results(out, label, rows, key=by, manifest=manifests[label], waits=waits)
            arms[label] = [rows]
    text = markdown_table(tables)
    if len(arms) > 1:
        scores, paired = compare_arms(arms, metric=metric, n_boot=bootstrap, seed=bootstrap_seed)
        diffs = differences(manifests, metric)  # the runs' own configs may differ: said with the table
        if diffs:
            console.print("[yellow]the arms' retrieval or metric settings differ:[/yellow] " + "; ".join(diffs))
        comparison = settings_note(manifests, diffs) + comparison_markdown(scores, paired, metric)
        atomic_write_text(out / "paired.md", comparison)
        atomic_write_text(out / "paired.json", comparison_json(scores, paired, metric))
        text += "\n" + comparison
    atomic_write_text(out / "results.md", text)
    typer.echo(text)


def compare(
    arm: Annotated[
        list[Path],
        typer.Argument(help="Eval rows of each arm: <label>.jsonl files (several runs: label=a.jsonl,b.jsonl)"),
    ],
    metric: Annotated[
        str,
        typer.Option(
            help="em | f1 | cover_em | subem | r1_cover_em | searched (share with a search) | searches (count)"
        ),
    ] = "em",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % intervals.")] = 2000,
    bootstrap_seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    allow_mismatch: Annotated[
        bool,
        typer.Option(help="Compare arms whose retrieval, metric or question settings differ; print the differences."),
    ] = False,
) -> None:
    """Paired comparison of finished evaluations (no model is loaded): every arm against the first one.

    ``searchrl compare runs/demo/eval/agent_sft.jsonl runs/demo/eval/agent_rl.jsonl --metric em``

    Arms are compared only when the manifests beside their rows (``<label>.manifest.json``) agree on
    corpus, index, retriever, the metric's normalization and the question set; rows without a manifest
    are compared with a note.
    """
    from searchrl.eval.manifest import ManifestMismatch, check_comparable, settings_note
    from searchrl.eval.paired import compare_arms, comparison_markdown
    from searchrl.eval.rows import arm_manifests, arm_paths, read_rows

    try:
        specs = [arm_paths(str(a)) for a in arm]
        arms = {label: [read_rows(p) for p in paths] for label, paths in specs}
        manifests = {k: v for label, paths in specs for k, v in arm_manifests(label, paths).items()}
        diffs = check_comparable(manifests, metric, allow_mismatch)
        scores, paired = compare_arms(arms, metric=metric, n_boot=bootstrap, seed=bootstrap_seed)
    except ManifestMismatch as err:
        typer.echo(f"error: {err}\n(--allow-mismatch compares them anyway and prints these differences)", err=True)
        raise typer.Exit(2) from None
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(settings_note(manifests, diffs) + comparison_markdown(scores, paired, metric))


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A run folder (its config.yaml and latest checkpoint); or omit it and pass model.path=DIR."),
    ] = None,
    overrides: Overrides = None,
    sample: Annotated[bool, typer.Option(help="Sample at rollout.temperature instead of greedy decoding.")] = False,
) -> None:
    """Answer one question with a trained agent and print its whole trace: searches, passages, answer.

    The retriever is the run's own (retrieval.* of its config); override it after the question, e.g.
    ``searchrl ask "..." retrieval.kind=http retrieval.url=http://127.0.0.1:8000/retrieve --checkpoint runs/demo``.
    Without ``--checkpoint``, ``model.path=DIR`` names the model: a folder from ``searchrl export`` brings
    its run's protocol, budgets and retriever settings (its ``searchrl_export.json``), under your overrides.
    """
    from searchrl.config import ConfigError
    from searchrl.rollout.backend import SamplingParams
    from searchrl.rollout.build import build_rollout
    from searchrl.rollout.engine import RolloutRequest
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.prompts import prompt_ids
    from searchrl.rollout.trace import format_trace
    from searchrl.trainer.checkpoint import load_trained_policy

    step: int | None
    try:
        if checkpoint is not None:
            cfg, policy, tok, step = load_trained_policy(checkpoint, overrides)
        else:
            cfg, policy, tok, step = load_model_path(overrides or [])
    except (FileNotFoundError, ConfigError, OSError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    console = Console()  # the trace is the command's output: stdout
    engine = build_rollout(cfg, HFGenerator(policy, tok), retriever_for(cfg), tok)
    params = SamplingParams(temperature=cfg.rollout.temperature) if sample else SamplingParams(greedy=True)
    (traj,) = engine.run([RolloutRequest("ask", 0, prompt_ids(tok, engine.protocol, question))], params, seed=cfg.seed)
    where = f"checkpoint step {step}" if step is not None else cfg.model.path
    console.print(f"[bold]{question}[/bold]  [dim]({where}, {cfg.retrieval.kind} retriever)[/dim]")
    console.print(format_trace(traj, tok, markup=True), highlight=False)
    console.print(f"[bold green]answer:[/bold green] {traj.answer if traj.answer is not None else '(none)'}")


def load_model_path(overrides: list[str]) -> tuple[Any, Any, Any, int | None]:
    """(config, policy, tokenizer, step) for ``model.path=DIR`` without a run folder; an exported folder's
    recorded overrides (``searchrl_export.json``) come first, so the command's own overrides win."""
    from searchrl.config import load_config
    from searchrl.models import EXPORT_RECORD, load_policy

    cfg = load_config(None, overrides)
    record_path = Path(cfg.model.path) / EXPORT_RECORD
    step = None
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        cfg = load_config(None, [*record.get("overrides", []), *overrides])
        step = record.get("step")
    policy, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    return cfg, policy, tok, step


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (metrics.jsonl, eval/, samples.jsonl, summary.json).")],
    out: Annotated[Path | None, typer.Option(help="Where to write the page (default RUN_DIR/report.html).")] = None,
) -> None:
    """Write a static HTML report: training curves, the results table, a trajectory viewer."""
    from searchrl.report import write_report

    try:
        path = write_report(run_dir, out)
    except FileNotFoundError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path}")


def demo(
    config: ConfigOpt = None,
    overrides: Overrides = None,
    quick: Annotated[bool, typer.Option(help="Small settings: a few minutes instead of ~15.")] = False,
) -> None:
    """The main job on the embedded default: world, BM25, SmolLM2, baselines, SFT, RL, held-out eval."""
    from importlib.resources import files

    from searchrl.demo import run_demo
    from searchrl.eval.run import markdown_table

    packaged = Path(str(files("searchrl") / "configs" / "demo.yaml"))
    cfg = resolve(config or packaged, overrides)
    console = error_console()
    try:
        summary = run_demo(cfg, quick=quick, log=lambda msg: console.print(f"[cyan]demo[/cyan] {msg}"), console=console)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: finished stages are kept in {cfg.output_dir}; run the same command again to continue",
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo(markdown_table(summary["tables"]))
    typer.echo(f"total {summary['timings_s']['total']:.0f} s; results in {cfg.output_dir}/results.md")
