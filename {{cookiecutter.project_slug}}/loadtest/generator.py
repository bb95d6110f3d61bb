"""One Locust run, headless: its users against a server, its numbers from Locust's own CSV.

Locust runs as `python -m locust` from the project folder (so Locust files can
import the `loadtest` package), with FastHttpUser clients, all users spawned
within a second and statistics reset once they are (--reset-stats): the numbers
are those of the steady state. With `workers`, Locust's distributed mode runs a
master and that many worker processes on this machine (--processes).

With an arrival rate, the scenario's open-model users run instead
(open_model.py): ARRIVAL_USERS_PER_RPS users per request/s (at least one, at most
MAX_ARRIVAL_USERS), who together start that many requests per second on a schedule,
and write what they offered, sent late and saw answered to PREFIX.arrivals.json.

Each run leaves Locust's CSV files (PREFIX_stats.csv, _stats_history.csv,
_failures.csv, _exceptions.csv), its HTML report and its log next to each other.
"""

import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import processes
from .sampling import Sampler
from .server import PROJECT_DIR, last_line

PROGRESS_PLUGIN = Path(__file__).with_name("locust_progress.py")
# Every user starts within this long; Locust's statistics start afterwards (--reset-stats).
RAMP_UP_S = 1.0
# Locust's start-up, and its stop after the run time, on top of the run itself.
SLACK_S = 90.0
# The open model's users: one per 10 requests/s, each starting a request every 100 ms.
ARRIVAL_USERS_PER_RPS = 0.1
MAX_ARRIVAL_USERS = 100


class LocustError(RuntimeError):
    """Locust itself failed (a broken Locust file, say); str() is one line."""


@dataclass(frozen=True)
class Stats:
    """The Aggregated row of Locust's PREFIX_stats.csv: every request of a run together."""

    requests: int
    failures: int
    rps: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def arrival_users(rate, workers=0):
    """Users that start `rate` requests/s between them: enough for each Locust worker."""
    return max(1, workers, min(MAX_ARRIVAL_USERS, math.ceil(rate * ARRIVAL_USERS_PER_RPS)))


def command(scenario, url, users, duration_s, prefix, workers, arrivals=False):
    args = [sys.executable, "-m", "locust", "--headless", "--only-summary", "--reset-stats"]
    args += ["--locustfile", f"{scenario.locustfile},{PROGRESS_PLUGIN}", "--host", url]
    spawn_rate = users / RAMP_UP_S
    args += ["--users", str(users), "--spawn-rate", f"{spawn_rate:g}"]
    args += ["--run-time", f"{duration_s + RAMP_UP_S:g}s"]
    args += ["--csv", str(prefix), "--html", f"{prefix}.html"]
    # Failed requests are results to report, not a failure of Locust's.
    args += ["--exit-code-on-error", "0"]
    if workers:
        args += ["--processes", str(workers)]
    user_class = scenario.arrival_class if arrivals else scenario.user_class
    if user_class:
        args.append(user_class)
    return args


def run(
    scenario,
    server,
    users,
    duration_s,
    prefix,
    *,
    workers=0,
    cpus=None,
    count_db_connections=None,
    on_progress=None,
    arrival_rate=None,
    upstream=None,
    watchers=(),
):
    """Run Locust against `server` (server.Server), sample meanwhile; (Stats, sampling.Usage).

    `arrival_rate`: the open model at that many requests/s, instead of `users` in a closed
    loop. `upstream`: a server.Server the scenario calls, whose CPU is sampled too.
    `watchers`: more samplers of the server (sampling.Watcher).
    """
    progress_path = Path(f"{prefix}.progress.json")
    progress_path.unlink(missing_ok=True)
    log_path = Path(f"{prefix}.locust.log")
    env = {**os.environ, "LOADTEST_PROGRESS_FILE": str(progress_path)}
    if arrival_rate is not None:
        users = arrival_users(arrival_rate, workers)
        env["LOADTEST_ARRIVAL_RATE"] = f"{arrival_rate:g}"
        env["LOADTEST_ARRIVALS_FILE"] = str(arrivals_path(prefix))
        arrivals_path(prefix).unlink(missing_ok=True)
    deadline = time.monotonic() + duration_s + SLACK_S
    args = command(
        scenario, server.url, users, duration_s, prefix, workers, arrival_rate is not None
    )
    with (
        open(log_path, "w") as log,
        processes.running(
            args, env=env, cwd=PROJECT_DIR, cpus=cpus, stdout=log, grace=10.0
        ) as locust,
        Sampler(
            server, locust.pid, progress_path, count_db_connections, upstream, watchers
        ) as sampler,
    ):
        while locust.poll() is None:
            if time.monotonic() > deadline:
                raise LocustError(f"Locust did not stop within {duration_s + SLACK_S:g} s")
            if on_progress is not None:
                on_progress(sampler.progress)
            time.sleep(0.5)
    progress_path.unlink(missing_ok=True)
    if locust.returncode != 0:
        raise LocustError(
            f"Locust exited with {locust.returncode}: {last_line(log_path.read_text())}"
        )
    return read_stats(Path(f"{prefix}_stats.csv")), sampler.usage


def arrivals_path(prefix):
    return Path(f"{prefix}.arrivals.json")


def read_arrivals(prefix):
    """What an open-model run offered, sent, sent late and saw answered (open_model.py)."""
    try:
        return json.loads(arrivals_path(prefix).read_text())
    except (OSError, ValueError):
        raise LocustError(
            f"no arrival counts in {arrivals_path(prefix)}: see Locust's log"
        ) from None


def read_stats(stats_path):
    """The Stats in a Locust PREFIX_stats.csv file."""
    try:
        with open(stats_path, newline="") as stats:
            row = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    except (OSError, StopIteration):
        raise LocustError(f"no statistics in {stats_path}: see Locust's log beside it") from None

    def number(column):
        value = row[column]
        return float(value) if value not in ("", "N/A") else 0.0

    return Stats(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        rps=number("Requests/s"),
        mean_ms=number("Average Response Time"),
        p50_ms=number("50%"),
        p95_ms=number("95%"),
        p99_ms=number("99%"),
    )
