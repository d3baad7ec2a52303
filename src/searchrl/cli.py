"""The one ``searchrl`` command. Each subcommand: load config -> build objects -> call one function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from searchrl.config import Config, ConfigError, dump_config, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved configuration.")
model_app = typer.Typer(no_args_is_help=True, help="Prepare policy models.")
app.add_typer(config_app, name="config")
app.add_typer(model_app, name="model")
index_app = typer.Typer(no_args_is_help=True, help="Build and inspect retrieval indexes.")
app.add_typer(index_app, name="index")
data_app = typer.Typer(no_args_is_help=True, help="Synthetic worlds and QA data.")
app.add_typer(data_app, name="data")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
Overrides = Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. retrieval.topk=5")]


def _console() -> Console:
    return Console(stderr=True)


def resolve(config: Path | None, overrides: list[str] | None) -> Config:
    """Load the config or exit with the error message (no traceback for user mistakes)."""
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        _console().print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


@config_app.command("show")
def config_show(config: ConfigOpt = None, overrides: Overrides = None) -> None:
    """Print the resolved config as YAML."""
    typer.echo(dump_config(resolve(config, overrides)), nl=False)


@model_app.command("prepare")
def model_prepare(config: ConfigOpt = None, overrides: Overrides = None) -> None:
    """Convert and cache the configured policy (the offline GGUF is converted once to safetensors)."""
    from searchrl.models import ModelNotAvailable, resolve_model_path

    cfg = resolve(config, overrides)
    try:
        path = resolve_model_path(cfg.model.path, cfg.model.cache_dir)
    except ModelNotAvailable as exc:
        _console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    typer.echo(str(path))


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Option(help="Corpus file (any format searchrl reads).")],
    out: Annotated[Path, typer.Option(help="Index folder to write.")],
    config: ConfigOpt = None,
    overrides: Overrides = None,
    fmt: Annotated[str, typer.Option("--format", help="Corpus format, or auto.")] = "auto",
) -> None:
    """Build a BM25 or dense index (retrieval.kind) over a corpus, with a manifest."""
    from searchrl.retrieval.corpus import CorpusError, load_corpus
    from searchrl.retrieval.index import build_index

    cfg = resolve(config, overrides)
    kind = cfg.retrieval.kind
    if kind != "bm25" and kind != "dense":
        _console().print(f"[red]index build needs retrieval.kind bm25 or dense, not {kind}[/red]")
        raise typer.Exit(2)
    try:
        passages = load_corpus(corpus, fmt)
    except CorpusError as exc:
        _console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    r = cfg.retrieval
    with _console().status(f"indexing {len(passages)} passages ({kind})"):
        path = build_index(
            passages, out, kind, encoder=r.encoder, faiss=r.faiss, hnsw_m=r.hnsw_m, source=str(corpus), progress=False
        )
    typer.echo(f"wrote {path} ({len(passages)} passages, {r.kind})")


@app.command("serve")
def serve(config: ConfigOpt = None, overrides: Overrides = None) -> None:
    """Serve retrieval over HTTP (Search-R1 protocol) from retrieval.index_dir or retrieval.corpus."""
    import os

    from searchrl.retrieval.index import retriever_from_config
    from searchrl.retrieval.server import run_server

    cfg = resolve(config, overrides)
    try:
        retriever = retriever_from_config(cfg.retrieval)
    except (ValueError, RuntimeError) as exc:
        _console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    token = os.environ.get(cfg.serve.token_env) or None
    _console().print(
        f"serving on http://{cfg.serve.host}:{cfg.serve.port}/retrieve" + (" (bearer token required)" if token else "")
    )
    run_server(retriever, cfg.serve, token)


@data_app.command("world")
def data_world(
    out: Annotated[Path, typer.Option(help="Folder to write (corpus, questions per split, gold trajectories).")],
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    size: Annotated[str, typer.Option(help="tiny | small | medium | large")] = "small",
) -> None:
    """Generate a synthetic world deterministically from a seed."""
    from searchrl.data.world import generate_world, save_world

    try:
        world = generate_world(seed, size)  # type: ignore[arg-type]
    except ValueError as exc:
        _console().print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    save_world(world, out)
    counts = {s: len(q) for s, q in world.questions.items()}
    typer.echo(f"wrote {out}: {len(world.passages)} passages, questions {counts}")


def _retriever_for(cfg: Config):  # type: ignore[no-untyped-def]
    """The configured retriever; with no index or corpus given, BM25 over the default world."""
    from searchrl.retrieval.index import retriever_from_config

    r = cfg.retrieval
    if r.kind in ("bm25", "dense") and not r.index_dir and not r.corpus:
        from searchrl.data.world import default_world
        from searchrl.retrieval.bm25 import BM25Retriever

        return BM25Retriever.build(default_world().passages)
    return retriever_from_config(r)


@data_app.command("filter")
def data_filter(
    out: Annotated[Path, typer.Option(help="Folder for easy.jsonl / medium.jsonl / hard.jsonl.")],
    config: ConfigOpt = None,
    overrides: Overrides = None,
    k: Annotated[int, typer.Option(help="Sampled rollouts per question.")] = 4,
) -> None:
    """R1-Searcher's difficulty filter: bin data.train questions by the policy's pass rate over k samples."""
    from searchrl.data.protocols import PROTOCOLS
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy
    from searchrl.rollout.difficulty import bin_examples, pass_rates, write_bins
    from searchrl.rollout.engine import RolloutEngine
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.prompts import prompt_ids
    from searchrl.trainer.loop import named_reward, rollout_limits

    cfg = resolve(config, overrides)
    examples = load_source(cfg.data.train, "train", cfg.data.max_examples)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    protocol = PROTOCOLS[cfg.rollout.protocol]
    engine = RolloutEngine(HFGenerator(model, tok), _retriever_for(cfg), tok, protocol, rollout_limits(cfg))
    rates = pass_rates(
        examples,
        engine,
        lambda ex: prompt_ids(tok, protocol, ex.question),
        named_reward(cfg.train.reward, protocol),
        k=k,
        seed=cfg.seed,
    )
    binned = bin_examples(examples, rates)
    write_bins(out, binned, rates)
    typer.echo(f"wrote {out}: " + ", ".join(f"{name} {len(v)}" for name, v in binned.items()))


@app.command("train")
def train(
    config: ConfigOpt = None,
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's latest checkpoint.")] = False,
) -> None:
    """RL-train the policy (train.algorithm) on data.train with the configured retriever."""
    from searchrl.config import save_config
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy
    from searchrl.trainer.loop import Trainer

    cfg = resolve(config, overrides)
    examples = load_source(cfg.data.train, "train", cfg.data.max_examples)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    save_config(cfg, cfg.output_dir)
    trainer = Trainer(cfg, model, tok, _retriever_for(cfg), examples, cfg.output_dir)
    if resume and trainer.resume():
        _console().print(f"resumed at step {trainer.state.step}")
    console = _console()
    trainer.fit(
        progress=lambda s, n, m: console.print(
            f"step {s}/{n} reward {m['reward/mean']:.3f} em {m['reward/em']:.3f} searches {m['rollout/searches']:.2f} "
            f"({m['perf/time_step']:.1f} s)"
        )
    )


@app.command("eval")
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
        Path | None, typer.Option(help="Evaluate the policy of this run folder (its latest checkpoint).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for <method>.jsonl, <method>.json and results.md")] = Path(
        "runs/eval"
    ),
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
    """
    from searchrl.data.protocols import PROTOCOLS
    from searchrl.data.qa import DataError
    from searchrl.data.sources import load_source
    from searchrl.eval.run import METHODS, evaluate, markdown_table, write_results
    from searchrl.models import load_policy
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.corpus import CorpusError, passages_from_qa_file
    from searchrl.rollout.hf import HFGenerator
    from searchrl.trainer.loop import load_trained_policy, rollout_limits
    from searchrl.utils import atomic_write_text

    console = _console()
    methods = method or ["agent"]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        console.print(f"[red]unknown method {bad}; valid: {', '.join(METHODS)}[/red]")
        raise typer.Exit(2)
    if checkpoint is not None:
        try:
            cfg, model, tok, step = load_trained_policy(checkpoint, overrides)
        except FileNotFoundError as err:
            console.print(f"[red]{err}[/red]")
            raise typer.Exit(2) from None
        console.print(f"policy: {checkpoint} (checkpoint step {step})")
    else:
        cfg = resolve(config, overrides)
        model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    specs = dataset or [cfg.data.eval]
    try:
        sets = {spec: load_source(spec, "test", cfg.data.max_examples) for spec in specs}
        retrievers = (
            {spec: BM25Retriever.build(passages_from_qa_file(spec)) for spec in specs}
            if own_corpus
            else dict.fromkeys(specs, _retriever_for(cfg))
        )
    except (DataError, CorpusError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    judge = None
    if judge_url is not None:
        from searchrl.eval.judge import JudgeConfig, LLMJudge, with_verdicts

        judge = LLMJudge(JudgeConfig(base_url=judge_url, model=judge_model, api_key_env=judge_key_env))
    tables = {}
    for m in methods:
        rows: list[Any] = []
        for spec, examples in sets.items():
            with _bar(console, f"{m} {Path(spec).name}", len(examples)) as advance:
                got = evaluate(
                    m,  # type: ignore[arg-type]
                    examples,
                    HFGenerator(model, tok),
                    tok,
                    retrievers[spec],
                    PROTOCOLS[cfg.rollout.protocol],
                    rollout_limits(cfg),
                    progress=advance,
                )
            rows.extend(got)
        if judge is not None:
            rows, failure = with_verdicts(rows, judge)
            if failure is not None:
                console.print(f"[yellow]LLM judge failed; results written without it:[/yellow] {failure}")
        # one dataset: rows per question type (1hop/2hop, bridge/comparison); several: rows per dataset
        by = (lambda r: r.group) if len(sets) == 1 else (lambda r: r.dataset)
        tables[m] = write_results(out, m, rows, key=by)
    text = markdown_table(tables)
    atomic_write_text(out / "results.md", text)
    typer.echo(text)


@contextmanager
def _bar(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.progress import Progress

    with Progress(*Progress.get_default_columns(), console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@app.command("rollout")
def rollout_cmd(
    config: ConfigOpt = None,
    overrides: Overrides = None,
    n: Annotated[int, typer.Option(help="Questions to roll out.")] = 4,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding instead of sampling.")] = False,
) -> None:
    """Roll out the policy on data.eval questions and print readable traces (injected text marked)."""
    from searchrl.data.protocols import PROTOCOLS
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy
    from searchrl.rollout.backend import SamplingParams
    from searchrl.rollout.engine import RolloutEngine, RolloutRequest
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.prompts import prompt_ids
    from searchrl.rollout.trace import format_trace
    from searchrl.trainer.loop import rollout_limits

    cfg = resolve(config, overrides)
    examples = load_source(cfg.data.eval, "test", n)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    protocol = PROTOCOLS[cfg.rollout.protocol]
    engine = RolloutEngine(HFGenerator(model, tok), _retriever_for(cfg), tok, protocol, rollout_limits(cfg))
    reqs = [RolloutRequest(ex.id, 0, prompt_ids(tok, protocol, ex.question)) for ex in examples]
    params = SamplingParams(greedy=True) if greedy else SamplingParams(temperature=cfg.rollout.temperature)
    console = Console()
    for ex, traj in zip(examples, engine.run(reqs, params, seed=cfg.seed), strict=True):
        console.print(f"[bold]{ex.question}[/bold]  gold={list(ex.answers)}")
        console.print(format_trace(traj, tok, markup=True), highlight=False)
        console.print()


@app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    checkpoint: Annotated[Path, typer.Option(help="A run folder (its config.yaml and latest checkpoint).")],
    overrides: Overrides = None,
    sample: Annotated[bool, typer.Option(help="Sample at rollout.temperature instead of greedy decoding.")] = False,
) -> None:
    """Answer one question with a trained agent and print its whole trace: searches, passages, answer.

    The retriever is the run's own (retrieval.* of its config); override it after the question, e.g.
    ``searchrl ask "..." retrieval.kind=http retrieval.url=http://127.0.0.1:8000/retrieve --checkpoint runs/demo``.
    """
    from searchrl.config import ConfigError
    from searchrl.data.protocols import PROTOCOLS
    from searchrl.rollout.backend import SamplingParams
    from searchrl.rollout.engine import RolloutEngine, RolloutRequest
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.prompts import prompt_ids
    from searchrl.rollout.trace import format_trace
    from searchrl.trainer.loop import load_trained_policy, rollout_limits

    try:
        cfg, policy, tok, step = load_trained_policy(checkpoint, overrides)
    except (FileNotFoundError, ConfigError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    console = Console()  # the trace is the command's output: stdout
    protocol = PROTOCOLS[cfg.rollout.protocol]
    engine = RolloutEngine(HFGenerator(policy, tok), _retriever_for(cfg), tok, protocol, rollout_limits(cfg))
    params = SamplingParams(temperature=cfg.rollout.temperature) if sample else SamplingParams(greedy=True)
    (traj,) = engine.run([RolloutRequest("ask", 0, prompt_ids(tok, protocol, question))], params, seed=cfg.seed)
    console.print(f"[bold]{question}[/bold]  [dim](checkpoint step {step}, {cfg.retrieval.kind} retriever)[/dim]")
    console.print(format_trace(traj, tok, markup=True), highlight=False)
    console.print(f"[bold green]answer:[/bold green] {traj.answer if traj.answer is not None else '(none)'}")


@app.command("report")
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


@app.command("demo")
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
    console = _console()
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


def main() -> None:
    app()


if __name__ == "__main__":  # python -m searchrl.cli
    main()
