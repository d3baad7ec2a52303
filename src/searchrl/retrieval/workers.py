"""``searchrl serve`` with several worker processes on one port.

Uvicorn's supervisor binds the socket once and starts ``serve.workers`` processes that accept on it
(the kernel spreads connections); it restarts a worker that dies. Each worker builds its own retriever
from the resolved config (handed over in an environment variable, as JSON) by calling
:func:`worker_app`. With ``retrieval.mmap`` the BM25 arrays and faiss codes are memory-mapped, so the
workers share one copy of the index through the page cache; each holds its own vocabulary, encoder
and passage-store connection. Searches stay one at a time within a worker (see
:mod:`searchrl.retrieval.server`); workers are what lets several run at once.
"""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING

from searchrl.config import Config

if TYPE_CHECKING:
    from fastapi import FastAPI

CONFIG_ENV = "SEARCHRL_SERVE_CONFIG"


def worker_app() -> FastAPI:
    """The app of one worker process: the retriever of the config in ``$SEARCHRL_SERVE_CONFIG``."""
    from searchrl.retrieval.factory import retriever_from_config
    from searchrl.retrieval.server import create_app

    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start workers with `searchrl serve serve.workers=N`")
    cfg = Config.model_validate_json(text)
    app = create_app(retriever_from_config(cfg.retrieval), cfg.serve, os.environ.get(cfg.serve.token_env) or None)
    gc.freeze()  # the index lives as long as the process (see run_server)
    return app


def run_workers(cfg: Config) -> None:
    """Serve ``cfg`` with ``cfg.serve.workers`` processes on ``serve.host:serve.port`` until interrupted."""
    import uvicorn

    os.environ[CONFIG_ENV] = cfg.model_dump_json()
    uvicorn.run(
        "searchrl.retrieval.workers:worker_app",
        factory=True,
        host=cfg.serve.host,
        port=cfg.serve.port,
        workers=cfg.serve.workers,
        log_level="warning",
        access_log=False,
    )
