"""The on-disk passage store: one SQLite file, written once from a stream, read by row on demand.

Every index folder keeps its passages in ``passages.sqlite``: a table ``passages(row, id, title, text)``
where ``row`` is the 0-based position the BM25 matrix and the faiss index use for the passage, and a
unique index maps a passage id to its row. Retrievers hold a :class:`PassageStore` (a read-only
``Sequence[Passage]``) and fetch the few rows a search returns; nothing holds all passages in memory.

Why SQLite rather than memory-mapped Arrow/Parquet:

* it is in the standard library (no new dependency for users), and its file is one self-describing,
  crash-safe unit that can be written from a stream one batch at a time;
* lookup by row and by id are both B-tree lookups in the file; reads go through a page cache whose
  size we set (16 MiB), so a server's RSS does not grow with the corpus. Pages of a memory-mapped
  Arrow file that a process touches count in its RSS, and the id-to-row map would be a second
  structure to build and keep in step;
* deduplicating a 21M-passage stream needs a set of seen (title, text) keys that does not fit the
  bounded-memory budget as Python objects; a unique index in a temporary SQLite table does it on disk.

A store costs its text plus about 40 bytes per passage of SQLite row and id-index overhead (measured
in docs/benchmarks.md). Writing is batched (10k rows per transaction, journaling off: the file is
written under a temporary name and renamed when complete, so a crash leaves no half store).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from searchrl.types import Passage

STORE_FILE = "passages.sqlite"
SCHEMA_VERSION = 1
BATCH = 10_000
READ_CACHE_KIB = 16 * 1024
WRITE_CACHE_KIB = 64 * 1024


class StoreError(ValueError):
    """A passage store that cannot be written or read (duplicate ids, a damaged or foreign file)."""


@dataclass(frozen=True)
class StoreInfo:
    """What writing a store produced: the passage count and the sha256 over its passages in row order
    (the same digest as :func:`searchrl.retrieval.ondisk.index.passages_fingerprint`)."""

    n_passages: int
    fingerprint: str
    n_dropped: int  # empty or repeated passages left out (0 when not deduplicating)


def _dedupe_key(p: Passage) -> bytes:
    return hashlib.blake2b(f"{p.title}\x1f{p.text}".encode(), digest_size=16).digest()


class _Writer:
    """Inserts passages in row order; with ``dedupe`` applies :func:`searchrl.retrieval.corpus.dedupe`'s
    rules (empty and repeated passages dropped, missing or taken ids become ``<title>#<n>``) on disk."""

    def __init__(self, conn: sqlite3.Connection, dedupe: bool) -> None:
        self.conn = conn
        self.dedupe = dedupe
        self.n = 0
        self.dropped = 0
        self.hash = hashlib.sha256()
        self.next_n: dict[str, int] = {}  # only titles that needed a generated id

    def _insert(self, pid: str, p: Passage) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO passages(row, id, title, text) VALUES (?, ?, ?, ?)", (self.n, pid, p.title, p.text)
        )
        return cur.rowcount == 1

    def add(self, p: Passage) -> None:
        if self.dedupe:
            if not p.text.strip():
                self.dropped += 1
                return
            if self.conn.execute("INSERT OR IGNORE INTO seen.keys VALUES (?)", (_dedupe_key(p),)).rowcount == 0:
                self.dropped += 1
                return
        pid = p.id
        if not pid or not self._insert(pid, p):
            if not self.dedupe:
                what = "an empty id" if not pid else f"the id {pid!r} twice"
                raise StoreError(f"passage {self.n} has {what}; passage ids must be unique and non-empty")
            n = self.next_n.get(p.title, 0)
            while not self._insert(pid := f"{p.title}#{n}", p):
                n += 1
            self.next_n[p.title] = n + 1
        self.hash.update(f"{pid}\x1f{p.title}\x1f{p.text}\x1e".encode())
        self.n += 1


def write_store(
    passages: Iterable[Passage],
    path: str | Path,
    *,
    dedupe: bool = True,
    progress: Callable[[int], None] | None = None,
) -> StoreInfo:
    """Write ``passages`` (any iterable, consumed once) to a new store file at ``path``.

    ``dedupe`` drops empty and repeated passages and assigns missing or taken ids as
    :func:`~searchrl.retrieval.corpus.dedupe` does; without it the passages are stored as given and a
    repeated or empty id is a :class:`StoreError`. ``progress(n)`` is called with each batch's size.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    seen = path.with_name(f".{path.name}.seen.tmp")
    for stale in (tmp, seen):
        stale.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.executescript(
            f"""
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-{WRITE_CACHE_KIB};
            CREATE TABLE passages(row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
                                  text TEXT NOT NULL);
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )
        conn.execute("ATTACH DATABASE ? AS seen", (str(seen),))
        conn.executescript(
            "PRAGMA seen.journal_mode=OFF; PRAGMA seen.synchronous=OFF; "
            "CREATE TABLE seen.keys(key BLOB PRIMARY KEY) WITHOUT ROWID;"
        )
        writer = _Writer(conn, dedupe)
        batch_start = 0
        conn.execute("BEGIN")
        for p in passages:
            writer.add(p)
            if writer.n - batch_start >= BATCH:
                conn.execute("COMMIT")
                if progress:
                    progress(writer.n - batch_start)
                batch_start = writer.n
                conn.execute("BEGIN")
        meta = {"schema_version": SCHEMA_VERSION, "n_passages": writer.n, "fingerprint": writer.hash.hexdigest()}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        conn.execute("COMMIT")
        if progress and writer.n > batch_start:
            progress(writer.n - batch_start)
        conn.execute("DETACH DATABASE seen")
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        seen.unlink(missing_ok=True)
    conn.close()
    os.replace(tmp, path)
    return StoreInfo(writer.n, writer.hash.hexdigest(), writer.dropped)


class PassageStore(Sequence[Passage]):
    """A read-only view of a store file: ``store[row]``, :meth:`get_many`, :meth:`row_of`, iteration.

    Safe to share between threads (one connection behind a lock); open one per process.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"passage store not found: {self.path}")
        self._lock = threading.Lock()
        uri = f"file:{self.path.resolve()}?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._conn.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a passage store ({exc})") from None
        if meta.get("schema_version") != str(SCHEMA_VERSION) or "n_passages" not in meta:
            raise StoreError(f"{self.path}: store schema {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        self._n = int(meta["n_passages"])
        self.fingerprint: str = meta["fingerprint"]

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> Passage: ...
    @overload
    def __getitem__(self, i: slice) -> list[Passage]: ...
    def __getitem__(self, i: int | slice) -> Passage | list[Passage]:
        if isinstance(i, slice):
            return self.get_many(range(*i.indices(self._n)))
        if not -self._n <= i < self._n:
            raise IndexError(f"row {i} is out of range for a store of {self._n} passages")
        return self.get_many([i % self._n])[0]

    def get_many(self, rows: Sequence[int]) -> list[Passage]:
        """The passages at ``rows`` (0-based, repeats allowed), in the order asked."""
        wanted = sorted(set(rows))
        found: dict[int, Passage] = {}
        with self._lock:
            for start in range(0, len(wanted), 900):  # below SQLite's limit on bound parameters
                part = wanted[start : start + 900]
                marks = ",".join("?" * len(part))
                for row, pid, title, text in self._conn.execute(
                    f"SELECT row, id, title, text FROM passages WHERE row IN ({marks})", part
                ):
                    found[row] = Passage(pid, title, text)
        missing = [r for r in wanted if r not in found]
        if missing:
            raise IndexError(f"rows {missing[:5]} are not in the store {self.path} ({self._n} passages)")
        return [found[r] for r in rows]

    def row_of(self, pid: str) -> int | None:
        """The row of the passage with id ``pid``, or None."""
        with self._lock:
            hit = self._conn.execute("SELECT row FROM passages WHERE id = ?", (pid,)).fetchone()
        return None if hit is None else int(hit[0])

    def batches(self, size: int = BATCH) -> Iterator[list[Passage]]:
        """Every passage in row order, ``size`` at a time (what index builds stream over)."""
        for start in range(0, self._n, size):
            with self._lock:
                rows = self._conn.execute(
                    "SELECT id, title, text FROM passages WHERE row >= ? AND row < ? ORDER BY row",
                    (start, start + size),
                ).fetchall()
            yield [Passage(pid, title, text) for pid, title, text in rows]

    def __iter__(self) -> Iterator[Passage]:
        for batch in self.batches():
            yield from batch

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"PassageStore({str(self.path)!r}, n={self._n})"


def fetch(passages: Sequence[Passage], rows: Sequence[int]) -> list[Passage]:
    """``[passages[r] for r in rows]``, in one store query when ``passages`` is a :class:`PassageStore`."""
    if isinstance(passages, PassageStore):
        return passages.get_many(rows)
    return [passages[r] for r in rows]
