"""How each preset sizes itself from the CPU budget: every preset's rule, in one place.

Each preset file explains its rule; this module is where the numbers live, as
plain functions of the CPU budget and the environment, so that the presets
apply them at start-up and `python -m config.gunicorn.sizing` prints what they
give on 1 to 64 CPUs (the table in README.md), database connections and a
memory estimate included.

    sync     2 x CPUs + 1 workers, one request each
    gthread  CPUs + 1 workers x GUNICORN_THREADS (8)
    gevent   CPUs workers x GUNICORN_WORKER_CONNECTIONS (1000)
    asgi     CPUs workers

WEB_CONCURRENCY replaces the rule; GUNICORN_MAX_WORKERS (16) caps either.
"""

import sys
from dataclasses import dataclass

from config.gunicorn.database.plan import BadPlan, plan_database
from config.gunicorn.environment import DEFAULT_DATABASE_CONNECTION_BUDGET, read_environment

MODELS = ("sync", "gthread", "gevent", "asgi")
RULES = {
    "sync": (lambda cpus: 2 * cpus + 1, "2 x CPUs + 1"),
    "gthread": (lambda cpus: cpus + 1, "CPUs + 1"),
    "gevent": (lambda cpus: cpus, "CPUs"),
    "asgi": (lambda cpus: cpus, "CPUs"),
}
DEFAULT_THREADS = 8
DEFAULT_CONNECTIONS = 1000  # gunicorn's worker_connections
# A gevent worker takes as many connections again as worker_connections, to shed them rather
# than leave them in the listen backlog (workers/gevent.py).
GEVENT_SHED_FACTOR = 2
# Memory under load, from `nox -s loadtest` on 2 CPUs (PSS, master and workers together):
# sync 192 MiB with 5 workers, gthread 145 with 3, gevent 160 with 2, asgi 187 with 2.
MASTER_MIB = 30
WORKER_MIB = {"sync": 32, "gthread": 38, "gevent": 65, "asgi": 78}


@dataclass(frozen=True)
class Sizing:
    model: str  # sync, gthread, gevent or asgi
    workers: int
    workers_from: str  # the rule or the variable that set the number
    threads: int = 1
    worker_connections: int | None = None  # gthread and gevent only

    @property
    def concurrency(self):
        """Requests one worker runs at once; None: no limit (the asgi worker has none)."""
        return {
            "sync": 1,
            "gthread": self.threads,
            "gevent": self.worker_connections,
        }.get(self.model)


def connections_held(model, worker_connections):
    """The most client connections one worker holds open; None: no bound (asgi)."""
    return {
        "sync": 1,
        "gthread": worker_connections,
        "gevent": GEVENT_SHED_FACTOR * worker_connections,
    }.get(model)


def size(model, cpus, env):
    """The Sizing of `model` on a CPU budget of `cpus`, given the environment `env`."""
    rule, formula = RULES[model]
    if env.workers is not None:
        wanted, workers_from = env.workers, "WEB_CONCURRENCY"
    else:
        wanted, workers_from = rule(cpus), formula
    if wanted > env.max_workers:
        workers = env.max_workers
        workers_from = f"{workers_from} = {wanted}, capped by GUNICORN_MAX_WORKERS"
    else:
        workers = wanted
    threads = (env.threads or DEFAULT_THREADS) if model == "gthread" else 1
    connections = {
        "gthread": env.worker_connections or DEFAULT_CONNECTIONS,
        "gevent": env.worker_connections or DEFAULT_CONNECTIONS,
    }.get(model)
    return Sizing(model, workers, workers_from, threads, connections)


def memory_mib(model, workers):
    return MASTER_MIB + WORKER_MIB[model] * workers


def table(cpu_counts=(1, 2, 4, 8, 16, 32, 64), environ=None):
    """The README's sizing table, as Markdown: each preset with the default environment."""
    env = read_environment(environ or {})
    lines = [
        "| CPUs | preset | workers | requests at once | database connections | memory |",
        "|---:|---|---:|---:|---|---:|",
    ]
    for cpus in cpu_counts:
        for model in MODELS:
            sizing = size(model, cpus, env)
            plan = plan_database(sizing, env.database_connection_budget)
            concurrency = sizing.concurrency
            at_once = "no limit" if concurrency is None else sizing.workers * concurrency
            lines.append(
                f"| {cpus} | {model} | {sizing.workers} | {at_once} | {plan.describe()} "
                f"| ~{memory_mib(model, sizing.workers)} MiB |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        print(table())
    except BadPlan as exc:
        sys.exit(str(exc))
    print(f"\n(DATABASE_CONNECTION_BUDGET {DEFAULT_DATABASE_CONNECTION_BUDGET}, the default)")
