"""Helpers shared by the retrieval-at-scale benchmarks: memory readings, a served index, a query load.

Memory is read from ``/proc/<pid>/status``: ``VmHWM`` (peak resident set) and ``VmRSS`` (now). For a
process that memory-maps its index, RSS counts the mapped pages it has touched (shared through the
page cache with other processes mapping the same files).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw"


def proc_kib(pid: int | str, field: str) -> int:
    """A ``kB`` field (``VmHWM``, ``VmRSS``, ``RssFile``...) of ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def gib(kib: int) -> float:
    return round(kib / 1024**2, 3)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(overrides: list[str], log: Path, timeout_s: float = 600.0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``searchrl serve`` in a subprocess with ``overrides``; yields (retrieve URL, process) once healthy."""
    port = free_port()
    cmd = [sys.executable, "-m", "searchrl.cli", "serve", f"serve.port={port}", *overrides]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "SEARCHRL_TOKEN": ""})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy after {timeout_s} s; see {log}")
            time.sleep(0.5)
        yield base + "/retrieve", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def query_load(url: str, queries: list[str], *, topk: int, batch: int, threads: int) -> dict[str, float]:
    """Send ``queries`` in requests of ``batch`` from ``threads`` client threads; queries/s end to end."""
    chunks = [queries[i : i + batch] for i in range(0, len(queries), batch)]
    with httpx.Client(timeout=120) as client:

        def send(chunk: list[str]) -> int:
            resp = client.post(url, json={"queries": chunk, "topk": topk, "return_scores": True})
            resp.raise_for_status()
            return len(resp.json()["result"])

        send(chunks[0])  # warm-up
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            answered = sum(pool.map(send, chunks))
        seconds = time.perf_counter() - start
    return {"queries": answered, "seconds": round(seconds, 2), "qps": round(answered / seconds, 1)}
