"""A preset's effective sizing, read from gunicorn itself, never recomputed here.

gunicorn's `--print-config` gives the worker class, workers, threads and
worker_connections after the preset, the environment and any gunicorn option
have had their say. The database connections the preset may open come from its
start-up line ("database: ..., 40 at most"); the baseline, stock and granian rows
have no such line and open at most one connection per request in flight.
The stock and granian rows are sized from a preset's --print-config (`like`).
"""

import re
from dataclasses import asdict, dataclass

from config.gunicorn import sizing as rules
from config.gunicorn.cpu import cpu_budget
from config.gunicorn.workers import model_of

from .server import GRANIAN


@dataclass(frozen=True)
class Sizing:
    worker_class: str  # the worker model: sync, gthread, gevent, asgi; or granian
    workers: int
    threads: int
    worker_connections: int
    cpus: int  # the server's CPU budget
    database_connections: int | None = None  # None: no more than one per slot

    @classmethod
    def from_print_config(cls, config, server_cpus):
        return cls(
            worker_class=model_of(config["worker_class"]),
            workers=int(config["workers"]),
            threads=int(config["threads"]),
            worker_connections=int(config["worker_connections"]),
            cpus=cpu_budget(affinity=len(server_cpus) if server_cpus else None).cpus,
        )

    def like(self, row):
        """The sizing of the row `row` sized like this preset: stock keeps it, granian runs
        its workers with as many blocking threads; neither has a connection budget."""
        model = GRANIAN if row == GRANIAN else self.worker_class
        return type(self)(**{**asdict(self), "worker_class": model, "database_connections": None})

    def with_startup_line(self, line):
        """The sizing, with the database connections the preset's start-up line reports."""
        match = re.search(r"database: [^;]*?(\d+) at most", line or "")
        if match is None:
            return self
        return type(self)(**{**asdict(self), "database_connections": int(match.group(1))})

    @property
    def slots(self):
        """Requests the workers run at once; None: no limit (the asgi worker has none)."""
        if self.worker_class == GRANIAN:
            return self.workers * self.threads
        per_worker = rules.Sizing(
            self.worker_class, self.workers, "", self.threads, self.worker_connections
        ).concurrency
        return None if per_worker is None else self.workers * per_worker

    def __str__(self):
        each = {
            "gthread": f" x {self.threads} threads",
            "gevent": f" x {self.worker_connections} connections",
            GRANIAN: f" x {self.threads} blocking threads",
        }.get(self.worker_class, "")
        text = f"{self.workers} {self.worker_class} worker{'s' if self.workers > 1 else ''}{each}"
        if self.database_connections is not None:
            text += f", {self.database_connections} database connections at most"
        return text
