"""The retrieval server under load, one run: batched throughput over HTTP vs in process, latency, errors.

The server (``searchrl.retrieval.server``, BM25 over the real union corpus of
``benchmarks/retrieval_bm25.py``, top-3) runs in a subprocess on loopback; the load comes from this
process. Measured:

1. batched queries/s: all real questions through ``HTTPRetriever.search`` (512 per request) vs the same
   ``BM25Retriever.search`` call in process; the ratio (goal >= 0.7);
2. latency at 32 concurrent clients (one query per request, each client sends its next request when
   the previous one is answered): p50 / p99 (goal p99 < 50 ms);
3. 20,000 requests at 64 concurrent clients: errors (any exception, non-200, or not 3 passages; goal 0),
   p50 / p99, req/s;
4. for reference, the project's own synchronous client (``HTTPRetriever``) shared by 32 threads.

The load generator of 2 and 3 is a minimal asyncio HTTP/1.1 client (one keep-alive connection per
simulated client): on this 2-core machine httpx.AsyncClient itself tops out near 200 requests/s, so it
would measure its own queueing, not the server. Latencies are measured by the client, so they include
its event-loop delays; client and server share the machine's cores.
Usage: .venv/bin/python benchmarks/retrieval_http.py [--requests 20000] [--latency-requests 4000] [--engine sparse]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from retrieval_bm25 import best_of, load_real_data
from searchrl.config import ServeConfig
from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.bm25_engines import DEFAULT_BM25_ENGINE, ENGINES
from searchrl.retrieval.client import HTTPRetriever
from searchrl.retrieval.server import run_server

TOPK = 3


def serve(port: int, engine: str) -> None:
    """Subprocess entry: build BM25 over the real corpus and serve it (no token, loopback)."""
    passages, _ = load_real_data()
    run_server(
        BM25Retriever.build(passages, engine=engine), ServeConfig(port=port, cache_size=0), None
    )  # measure searches, not a cache


def start_server(engine: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    script = str(Path(__file__).resolve())
    proc = subprocess.Popen([sys.executable, script, "--serve", str(port), "--engine", engine])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def request_bytes(host: str, port: int, query: str) -> bytes:
    """One keep-alive HTTP/1.1 ``POST /retrieve`` for ``query``, ready to write to a socket."""
    body = json.dumps({"queries": [query], "topk": TOPK, "return_scores": True}).encode()
    head = (
        f"POST /retrieve HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status code and body of one response (the server always sends Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def load(base: str, questions: list[str], n_requests: int, concurrency: int) -> tuple[list[float], int, float]:
    """``n_requests`` one-query requests from ``concurrency`` closed-loop clients: (latencies s, errors, wall s).

    Each client owns one keep-alive connection and sends its next request when the previous one is
    answered. An answer counts as an error unless it is a 200 with ``TOPK`` passages; after a
    transport error the client reconnects.
    """
    host, port = base.removeprefix("http://").split(":")
    payloads = [request_bytes(host, int(port), q) for q in questions]
    todo = iter(range(n_requests))
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        for i in todo:  # one shared iterator: the clients split the requests between them
            start = time.perf_counter()
            try:
                writer.write(payloads[i % len(payloads)])
                await writer.drain()
                status, body = await read_response(reader)
                ok = status == 200 and len(json.loads(body)["result"][0]) == TOPK
            except (OSError, EOFError, ValueError, LookupError):
                ok = False
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
            latencies.append(time.perf_counter() - start)
            errors += not ok
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


def load_threads(url: str, questions: list[str], n_requests: int, threads: int) -> tuple[list[float], int, float]:
    """The project's own client: ``threads`` threads sharing one :class:`HTTPRetriever`, one query per call."""
    latencies: list[float] = []
    errors = 0
    with HTTPRetriever(url, cache_size=0) as remote:

        def one(i: int) -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                ok = len(remote.search([questions[i % len(questions)]], TOPK)[0]) == TOPK
            except RetrievalError:
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(n_requests)))
        return latencies, errors, time.perf_counter() - start


def report(name: str, latencies: list[float], errors: int, wall: float) -> None:
    print(
        f"{name}: {len(latencies)} requests in {wall:.1f} s = {len(latencies) / wall:,.0f} req/s; "
        f"p50 {percentile(latencies, 50) * 1e3:.1f} ms, p99 {percentile(latencies, 99) * 1e3:.1f} ms, "
        f"max {max(latencies) * 1e3:.0f} ms; errors {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=20_000, help="requests of the 64-client run")
    parser.add_argument("--latency-requests", type=int, default=4_000, help="requests of the 32-client run")
    parser.add_argument("--engine", default=DEFAULT_BM25_ENGINE, choices=list(ENGINES), help="retrieval.bm25_engine")
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.engine)
        return

    passages, questions = load_real_data()
    local = BM25Retriever.build(passages, engine=args.engine)
    gc.freeze()  # as the server does: keep full collections of this big heap out of the latency figures
    print(
        f"corpus: {len(passages)} passages; queries: {len(questions)} real questions; BM25 top-{TOPK}, engine {args.engine}"
    )
    proc, base = start_server(args.engine)
    try:
        url = f"{base}/retrieve"
        local.search(questions[:50], TOPK)
        t_local = best_of(3, lambda: local.search(questions, TOPK))
        with HTTPRetriever(url, max_batch=512, cache_size=0) as remote:
            assert remote.search(questions[:50], TOPK) == local.search(questions[:50], TOPK)
            t_http = best_of(3, lambda: remote.search(questions, TOPK))
        qps_local, qps_http = len(questions) / t_local, len(questions) / t_http
        print(f"batched, in process: {qps_local:,.0f} queries/s")
        print(f"batched, over HTTP (512 queries per request): {qps_http:,.0f} queries/s")
        print(f"ratio HTTP / in process: {qps_http / qps_local:.2f}  (goal >= 0.7)")

        asyncio.run(load(base, questions, 500, 32))  # warm-up: connections, caches
        report(
            "32 concurrent clients, 1 query per request", *asyncio.run(load(base, questions, args.latency_requests, 32))
        )
        report("64 concurrent clients, 1 query per request", *asyncio.run(load(base, questions, args.requests, 64)))
        report("HTTPRetriever shared by 32 threads, 1 query per call", *load_threads(url, questions, 2000, 32))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
