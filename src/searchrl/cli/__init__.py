"""The one ``searchrl`` command. Each subcommand: load config -> build objects -> call one function.

This file is the command table; each subcommand lives in the module of its concern.
"""

from __future__ import annotations

import typer

from searchrl.cli import data, evaluate, experiment, export, retrieval, train
from searchrl.cli.common import install_interrupt_handler

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train and evaluate language models that reason and call a search engine.",
)
app.callback()(install_interrupt_handler)  # runs before every subcommand
app.add_typer(data.config_app, name="config")
app.add_typer(data.model_app, name="model")
app.add_typer(retrieval.index_app, name="index")
app.add_typer(data.data_app, name="data")
app.command("serve")(retrieval.serve)
app.command("train")(train.train)
app.command("rollout")(train.rollout_cmd)
app.command("eval")(evaluate.eval_cmd)
app.command("compare")(evaluate.compare)
app.command("ask")(evaluate.ask)
app.command("report")(evaluate.report)
app.command("demo")(evaluate.demo)
app.command("experiment")(experiment.experiment)
app.command("export")(export.export_cmd)


def main() -> None:
    app()
