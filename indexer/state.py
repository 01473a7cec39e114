"""The indexer's own records, kept in a folder next to the store (`state_dir`): its runs and its image cache.

What is indexed, and with which image bytes and fields, is kept in the store itself (each offer's
`content_hash`), so it is exactly as current as the last upsert, whatever killed the process. This
folder only says what the runs did, for `python -m indexer status`, and caches image bytes; losing
it costs a re-download, never a wrong index.

`RunLog` is one SQLite file (`runs.sqlite`): a row per run, written when it starts (state
`running`) and when it ends (`completed` or `failed`, with its summary). A run killed before its
end stays `running`; `status` shows it as `interrupted` once its process is gone. SQLite keeps the
file consistent across kills and lets runs for several shops (on a Qdrant server) write at once.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNS_FILE = "runs.sqlite"
IMAGES_DIR = "images"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    shop TEXT NOT NULL,
    feed TEXT NOT NULL,
    format TEXT,
    started REAL NOT NULL,
    finished REAL,
    state TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    summary TEXT
)
"""


def default_state_dir(store_path: Path) -> Path:
    """`<store_path>-indexer` beside the store's folder, e.g. var/store-indexer: one per store."""
    store_path = Path(store_path).absolute()
    return store_path.with_name(f"{store_path.name}-indexer")


@dataclass(frozen=True)
class Run:
    id: int
    shop: str
    feed: str
    format: str | None
    started: float
    finished: float | None
    state: str  # running | completed | failed | interrupted (running, and its process is gone)
    summary: dict[str, Any] | None


class RunLog:
    """The runs of the indexer in `path` (a SQLite file, created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:  # commits, or rolls back on error
            yield db

    def start(self, shop: str, feed: str, format: str | None) -> int:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (shop, feed, format, started, state, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (shop, feed, format, time.time(), "running", socket.gethostname(), os.getpid()),
            )
            return int(cursor.lastrowid)

    def finish(self, run_id: int, state: str, summary: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET finished = ?, state = ?, summary = ? WHERE id = ?",
                (time.time(), state, json.dumps(summary, ensure_ascii=False), run_id),
            )

    def latest(self) -> dict[str, Run]:
        """Each shop's most recent run, by shop."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, shop, feed, format, started, finished, state, host, pid, summary FROM runs "
                "WHERE id IN (SELECT MAX(id) FROM runs GROUP BY shop) ORDER BY shop"
            ).fetchall()
        return {row[1]: _run(row) for row in rows}

    def history(self, shop: str) -> list[Run]:
        """`shop`'s runs, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, shop, feed, format, started, finished, state, host, pid, summary FROM runs "
                "WHERE shop = ? ORDER BY id",
                (shop,),
            ).fetchall()
        return [_run(row) for row in rows]

    def latest_completed(self, shop: str) -> Run | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, shop, feed, format, started, finished, state, host, pid, summary FROM runs "
                "WHERE shop = ? AND state = 'completed' ORDER BY id DESC LIMIT 1",
                (shop,),
            ).fetchone()
        return _run(row) if row else None


def _run(row: tuple) -> Run:
    run_id, shop, feed, format, started, finished, state, host, pid, summary = row
    if state == "running" and host == socket.gethostname() and not _alive(pid):
        state = "interrupted"
    return Run(run_id, shop, feed, format, started, finished, state, json.loads(summary) if summary else None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
