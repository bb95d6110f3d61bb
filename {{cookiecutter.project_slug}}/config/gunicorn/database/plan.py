"""The database plan: how many PostgreSQL connections the workers may open, and how.

DATABASE_CONNECTION_BUDGET (default 40) is what one instance may open to each
database: PostgreSQL allows 100, and a rolling deploy runs the old and the new
instance side by side. Every preset stays within it, on any number of CPUs:

- sync: a persistent connection per worker (CONN_MAX_AGE). Its workers are
  capped at 16 (GUNICORN_MAX_WORKERS), well within; WEB_CONCURRENCY beyond the
  budget is refused.
- gthread: a persistent connection per thread while workers x threads fit in
  the budget (up to 4 CPUs: 5 x 8 = 40); beyond, a pool of budget / workers
  per worker, shared by its threads, so that 16 CPUs plan 34 connections, not
  136. Threads that wait for a connection still serve requests that need none.
- gevent and asgi: always a pool of budget / workers per worker, since their
  requests in flight have no limit worth planning connections for (1,000
  greenlets per gevent worker; a thread per request under asgi).

A request that waits longer than DJANGO_DB_POOL_TIMEOUT for a pooled
connection gets a 503. The gunicorn master exports the plan to its workers
(DJANGO_DB_POOL_SIZE), where settings built with database.settings.pooled()
apply it, and checks at start-up that they did (database.verify).
"""

from dataclasses import dataclass


class BadPlan(ValueError):
    """No plan fits the budget; str() is one line saying what to change."""


@dataclass(frozen=True)
class DatabasePlan:
    model: str
    workers: int
    concurrency: int | None  # requests one worker runs at once; None: no limit
    pool: int | None  # connections in each worker's pool; None: one per request slot
    budget: int

    @property
    def most(self):
        """The most connections the workers open together."""
        return self.workers * (self.pool if self.pool is not None else self.concurrency)

    def environ(self):
        """What the workers inherit: the pool for the settings (pooled()), and the budget."""
        exported = {"DATABASE_CONNECTION_BUDGET": str(self.budget), "DJANGO_DB_POOL_SIZE": ""}
        if self.pool is not None:
            exported["DJANGO_DB_POOL_SIZE"] = str(self.pool)
        return exported

    def describe(self, pool=None):
        """`pool`: the size the settings really give each worker's pool, if known."""
        pool = self.pool if pool is None else pool
        if pool is None:
            each = "a connection per worker" if self.model == "sync" else "a connection per thread"
            return f"{each}, {self.most} at most"
        return f"a pool of {pool} per worker, {self.workers * pool} at most"


def plan_database(sizing, budget):
    """The plan for `sizing` (sizing.Sizing, or the final gunicorn settings) within `budget`."""
    slots = None if sizing.concurrency is None else sizing.workers * sizing.concurrency
    if slots is not None and slots <= budget and sizing.model in ("sync", "gthread"):
        return DatabasePlan(sizing.model, sizing.workers, sizing.concurrency, None, budget)
    if sizing.model == "sync":
        raise BadPlan(
            f"{sizing.workers} sync workers need {sizing.workers} PostgreSQL connections, over "
            f"DATABASE_CONNECTION_BUDGET={budget}: lower WEB_CONCURRENCY or raise the budget"
        )
    pool = budget // sizing.workers
    if pool < 1:
        raise BadPlan(
            f"DATABASE_CONNECTION_BUDGET={budget} gives less than one connection to each of "
            f"the {sizing.workers} workers: raise it or lower WEB_CONCURRENCY"
        )
    return DatabasePlan(sizing.model, sizing.workers, sizing.concurrency, pool, budget)
