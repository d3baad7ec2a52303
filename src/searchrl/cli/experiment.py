"""`searchrl experiment FILE`: run (or resume) an experiment file and write its findings page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from searchrl.cli.common import error_console


def experiment(
    spec_file: Annotated[Path, typer.Argument(help="Experiment YAML (see recipes/experiments/).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default runs/experiments/<name>).")] = None,
    arm: Annotated[list[str] | None, typer.Option(help="Run only these arms (repeatable); others are kept.")] = None,
    findings_only: Annotated[bool, typer.Option(help="Only rewrite the findings page from finished runs.")] = False,
    calibrate: Annotated[
        bool,
        typer.Option(help="Dev calibration: held-out questions from the dev split, the first seed only."),
    ] = False,
) -> None:
    """Train and evaluate every arm x seed of SPEC_FILE, then write findings.md, findings.html, curves/
    and summary.json.

    Resumable: finished runs are kept (their held-out rows), an interrupted RL run continues from its
    last checkpoint; run the same command again. Pick settings with --calibrate (dev split, one seed,
    default folder runs/experiments/<name>_dev), then run without it on the test split once.
    """
    from searchrl.config import ConfigError
    from searchrl.experiment.findings import write_findings, write_run_reports
    from searchrl.experiment.runner import Experiment
    from searchrl.experiment.spec import load_spec

    console = error_console()
    try:
        spec = load_spec(spec_file)
    except ConfigError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    if calibrate:
        spec = spec.for_calibration()
    folder = out or Path("runs/experiments") / spec.name
    unknown = sorted(set(arm or []) - {a.name for a in spec.arms})
    if unknown:
        console.print(f"[red]unknown arm(s) {unknown}; the spec has {[a.name for a in spec.arms]}[/red]")
        raise typer.Exit(2)
    if not findings_only:
        try:
            exp = Experiment.prepare(spec, folder, log=lambda msg: console.print(f"[cyan]experiment[/cyan] {msg}"))
            exp.run(only=arm)
        except ValueError as err:
            console.print(f"[red]{err}[/red]")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo(f"interrupted: finished runs are kept in {folder}; run the same command again", err=True)
            raise typer.Exit(130) from None
    write_run_reports(spec, folder)
    page = write_findings(spec, folder)
    typer.echo(page.read_text())
    typer.echo(f"wrote {page} and {page.with_suffix('.html')}")
