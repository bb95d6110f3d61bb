"""Measure every preset under every scenario and load: `nox -s loadtest`.

For each row in turn (a preset, or a server to compare them with: see
server.py): read its sizing from gunicorn (--print-config), start it as a real
process against DATABASE_URL, wait for /readyz, calibrate what each kind of
request costs it, then run Locust once per scenario and load level while
sampling the server, the generator and the database. The load levels are the
user counts asked for, or those a capacity search picks one after the other
(--capacity, search.py), then the arrival rates of the open model
(--arrival-rate, open_model.py). Everything measured goes to
loadtest-results/<timestamp>/measurements.json as it is measured; report.py
then judges it: bounds, capacities, table, chart, page, recommendation, and
the sizing for --target-rps.

A scenario that calls an upstream (/demo/upstream) gets one: a second server,
the gevent preset, started once for the session and serving /demo/io.

A row that fails to start gets its one-line error in the report; the others
still run, and the session then exits non-zero. Ctrl-C (or SIGTERM) stops
every server and Locust process it started, and exits non-zero.

Without DATABASE_URL, devdb.py finds or brings a PostgreSQL for the session and
removes it at the end: the first line printed says which.
"""

import contextlib
import json
import math
import os
import platform
import sys
import time
import urllib.request
from dataclasses import asdict

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import devdb

from . import calibration, generator, report
from .bounds import Capacity, Cost, bound
{%- if cookiecutter.include_demo_endpoints %}
from .demo import DEMO_SCENARIOS
{%- endif %}
from .options import parse
from .results import new_results_dir, now
from .sampling import MetricsWatcher, Usage, tree_cpu_seconds
from .scenarios import from_locustfile
from .search import Search
from .server import (
    PRESETS,
    PROJECT_DIR,
    SERVER_ENVIRONMENT,
    ServerError,
    print_config,
    running_server,
    servers,
    shown_command,
    sized_like,
)
from .session import Interrupted, console, installed_versions, interrupt_on_sigterm
from .sizing import Sizing

RESULTS_DIR = PROJECT_DIR / "loadtest-results"
CALIBRATION_USERS = 1
CALIBRATION_S = 4.0
# After a run, requests Locust gave up on may still wait in the listen backlog (one
# sync worker with 500 of them queued: 25 s of /demo/io?ms=50): the next run waits.
SETTLE_TIMEOUT_S = 120.0
VERSIONS = (
    "django",
    "gunicorn",
    "gevent",
    "locust",
    "psycopg",
    "psycopg2-binary",
    "uvloop",
    "urllib3",
    "granian",
)
# The upstream /demo/upstream calls: the preset made for many waiting requests.
UPSTREAM_PRESET = "gevent"
# Runs of a capacity search, guessed for the progress bar until each search ends.
EXPECTED_SEARCH_STEPS = 5
# Database connections left free for everyone else when a row without a connection
# budget (baseline, stock, granian) would open one per request in flight.
SPARE_DB_CONNECTIONS = 5


def main(argv=None):
    options = parse(argv)
    with devdb.database() as database:
        console.print(database.note, markup=False, highlight=False, soft_wrap=True)
        return measure(options)


def measure(options):
    os.environ.update(SERVER_ENVIRONMENT)  # the sampler's Django settings match the servers'
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    database, database_info = connect_database()
    scenarios, skipped = choose_scenarios(options, database)
    cpus = split_cpus(options.workers)
    results = new_results_dir(RESULTS_DIR)
    measurements = {
        "started_at": now(),
        "machine": machine(*cpus, database_info and database_info["version"]),
        "database": database_info,
        "options": {
            **{key: value for key, value in asdict(options).items() if key != "locustfile"},
            "locustfile": str(options.locustfile) if options.locustfile else None,
            "scenarios": [scenario.name for scenario in scenarios],
        },
        "skipped": skipped,
        "presets": {},
        "runs": [],
    }
    interrupt_on_sigterm()
    session = Session(options, scenarios, results, measurements, database, cpus)
    try:
        session.run_all()
    except (KeyboardInterrupt, Interrupted):
        session.save()
        console.print(
            "[red]Interrupted: every server and Locust process it started is stopped. "
            f"What was measured so far: python -m loadtest.report {results}"
        )
        return 130
    measurements["finished_at"] = now()
    session.save()
    summary = report.write(results)
    report.print_summary(console, summary, results)
    failed = [row for row in summary["rows"] if row["error"]]
    return 1 if failed else 0


class Session:
    """The runs of one load test, and what has been measured of them so far."""

    def __init__(self, options, scenarios, results, measurements, database, cpus):
        self.options = options
        self.scenarios = scenarios
        self.results = results
        self.measurements = measurements
        self.database = database  # counts this database's connections; None: no PostgreSQL
        self.server_cpus, self.generator_cpus = cpus
        self.rows = servers(options.presets)
        self.upstream = None
        self.upstream_error = None
        per_scenario = (EXPECTED_SEARCH_STEPS if options.capacity else len(options.users)) + len(
            options.arrival_rates
        )
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        total = len(self.rows) * len(scenarios) * per_scenario
        self.task = self.progress.add_task("starting", total=total)
        self.done = 0

    @property
    def total(self):
        return self.progress.tasks[0].total

    def save(self):
        path = self.results / "measurements.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self.measurements, indent=2))
        partial.replace(path)

    def run_all(self):
        with self.progress, self.upstream_server():
            for row in self.rows:
                self.measure_row(row)

    @contextlib.contextmanager
    def upstream_server(self):
        """The server /demo/upstream calls, for the session, if a scenario calls it."""
        with contextlib.ExitStack() as stack:
            if any(scenario.uses_upstream for scenario in self.scenarios):
                self.status("the upstream: starting")
                log_path = self.results / "server-upstream.log"
                record = {"preset": UPSTREAM_PRESET, "log": log_path.name, "error": None}
                self.measurements["upstream"] = record
                try:
                    self.upstream = stack.enter_context(
                        running_server(UPSTREAM_PRESET, log_path, cpus=self.server_cpus)
                    )
                    record["url"] = self.upstream.url
                except ServerError as exc:
                    record["error"] = self.upstream_error = f"the upstream did not start: {exc}"
                    self.progress.console.print(f"[red]{self.upstream_error}")
            yield

    def status(self, text):
        number = min(self.done + 1, self.total)
        self.progress.update(self.task, description=f"run {number}/{self.total:.0f} {text}")

    def advance(self, planned=1, done=1):
        """`done` runs finished of `planned`: the bar's total follows what really ran."""
        self.done += done
        self.progress.update(self.task, total=self.total - planned + done, completed=self.done)

    def measure_row(self, row):
        record = {"sizing": None, "startup_line": None, "costs": {}, "error": None}
        self.measurements["presets"][row] = record
        log_path = self.results / f"server-{row}.log"
        record["log"] = log_path.name
        self.status(f"{row}: starting")
        extra_env = {"DJANGO_DEMO_UPSTREAM_URL": self.upstream.url} if self.upstream else {}
        try:
            sizing = Sizing.from_print_config(
                print_config(sized_like(row) or row, self.server_cpus), self.server_cpus
            )
            if row not in PRESETS and sized_like(row):
                sizing = sizing.like(row)
            record["command"] = shown_command(row, sizing)
            with running_server(
                row, log_path, cpus=self.server_cpus, extra_env=extra_env, sizing=sizing
            ) as server:
                record["startup_line"] = server.startup_line()
                sizing = sizing.with_startup_line(record["startup_line"])
                record["sizing"] = asdict(sizing)
                self.save()
                record["costs"] = self.calibrate(row, server)
                for scenario in self.scenarios:
                    self.measure_scenario(row, scenario, server, sizing)
        except (ServerError, calibration.CalibrationError, generator.LocustError) as exc:
            record["error"] = str(exc)
            self.progress.console.print(f"[red]{row}: {exc}")
            self.skip_runs(row, self.scenarios, str(exc))
        self.save()

    def calibrate(self, row, server):
        costs = {}
        for scenario in self.scenarios:
{%- if cookiecutter.include_demo_endpoints %}
            if scenario.uses_upstream and self.upstream is None:
                continue
            for request in scenario.requests:
                if request.name not in costs:
                    self.status(f"{row}: calibrating {request.calibration_path}")
                    costs[request.name] = asdict(calibration.calibrate_request(server, request))
            if scenario.requests:
                continue
{%- endif %}
            self.status(f"{row} {scenario.name}: calibrating with one user")
            costs[scenario.name] = asdict(self.calibrate_locustfile(row, scenario, server))
        return costs

    def calibrate_locustfile(self, row, scenario, server):
        prefix = self.results / f"{row}-{scenario.name}-calibration"
        cpu_before = tree_cpu_seconds(server.process.pid)
        stats, _ = generator.run(
            scenario, server, CALIBRATION_USERS, CALIBRATION_S, prefix, cpus=self.generator_cpus
        )
        cpu_s = tree_cpu_seconds(server.process.pid) - cpu_before
        return calibration.cost_from_locust_run(scenario.name, stats, cpu_s)

    def measure_scenario(self, row, scenario, server, sizing):
        """The scenario's closed-loop levels (given, or searched), then its arrival rates."""
        if scenario.uses_upstream and self.upstream_error:
            self.skip_runs(row, [scenario], self.upstream_error)
            return
        if self.options.capacity:
            self.search_capacity(row, scenario, server, sizing)
        else:
            for users in self.options.users:
                self.measure_run(row, scenario, server, sizing, users=users)
                self.advance()
        for rate in self.options.arrival_rates:
            self.measure_run(row, scenario, server, sizing, rate=rate)
            self.advance()

    def search_capacity(self, row, scenario, server, sizing):
        costs = self.measurements["presets"][row]["costs"]
        mix = [(weight, Cost(**costs[name])) for weight, name in mix_of(scenario)]
        capacity = Capacity(sizing.slots, sizing.database_connections, sizing.cpus)
        limit = bound(math.inf, mix, capacity)
        cycle_s = sum(weight * cost.cycle_s for weight, cost in mix) / sum(w for w, _ in mix)
        saturating = limit.rps * cycle_s if limit.rps else math.inf
        search = Search.from_prediction(saturating, quick=self.options.quick)
        runs = 0
        while (users := search.next_users()) is not None:
            run = self.measure_run(
                row, scenario, server, sizing, users=users, step=len(search.levels) + 1
            )
            runs += 1
            self.advance(planned=1 if runs <= EXPECTED_SEARCH_STEPS else 0)
            stats = run.get("stats")
            if run["error"] or stats is None:
                break
            search.record(
                users,
                passed=stats["failures"] == 0 and stats["p99_ms"] <= self.options.slo_p99_ms,
                rps=stats["rps"],
                generator_bound=Usage(**run["usage"]).generator_bound,
            )
        if runs < EXPECTED_SEARCH_STEPS:
            self.advance(planned=EXPECTED_SEARCH_STEPS - runs, done=0)

    def measure_run(self, row, scenario, server, sizing, users=None, rate=None, step=None):
        load = f"{users}" if rate is None else f"{rate:g}rps"
        name = f"{row}-{scenario.name}-{load}"
        run = {
            "preset": row,
            "scenario": scenario.name,
            "model": "closed" if rate is None else "open",
            "users": users,
            "arrival_rate": rate,
            "search_step": step,
            "mix": mix_of(scenario),
            "stats_csv": f"{name}_stats.csv",
            "locust_html": f"{name}.html",
            "locust_log": f"{name}.locust.log",
            "usage": None,
            "error": None,
            "skipped": None,
        }
        self.measurements["runs"].append(run)
        shown = f"{users} users" if rate is None else f"{rate:,g} req/s offered"
        run["skipped"] = self.reason_to_skip(scenario, sizing, users)
        if run["skipped"]:
            self.progress.console.print(f"[yellow]{row} {scenario.name} {shown}: {run['skipped']}")
            self.save()
            return run
        started = time.monotonic()
        last = {"at": started, "requests": 0}

        def show(progress):
            now_ = time.monotonic()
            requests = progress.get("requests", 0)
            rps = (requests - last["requests"]) / max(now_ - last["at"], 1e-3)
            if requests < last["requests"]:  # statistics were reset once every user ran
                rps = 0.0
            last.update(at=now_, requests=requests)
            state = progress.get("state", "starting")
            self.status(f"{row} {scenario.name} {shown}: {state}, {rps:,.0f} req/s")

        try:
            stats, usage = generator.run(
                scenario,
                server,
                users,
                self.options.duration_s,
                self.results / name,
                workers=self.options.workers,
                cpus=self.generator_cpus,
                count_db_connections=self.database,
                on_progress=show,
                arrival_rate=rate,
                upstream=self.upstream if scenario.uses_upstream else None,
                watchers=self.watchers(server),
            )
            if not stats.requests:
                raise generator.LocustError(
                    "no request was measured: the run was too short for this machine's load; "
                    "lengthen --duration"
                )
            run["usage"] = asdict(usage)
            run["stats"] = asdict(stats)
            if rate is not None:
                run["arrivals"] = generator.read_arrivals(self.results / name)
            self.progress.console.print(
                f"{row} {scenario.name} {shown}: {stats.rps:,.0f} req/s, "
                f"p99 {stats.p99_ms:,.0f} ms, {stats.failures} failed"
            )
        except generator.LocustError as exc:
            run["error"] = str(exc)
            self.progress.console.print(f"[red]{name}: {exc}")
        self.save()
        self.settle(server)
        return run

    def watchers(self, server):
        """More samplers of `server` for each run (sampling.Watcher): a preset's metrics."""
        return (MetricsWatcher(server.metrics_url),) if server.metrics_url else ()

    def reason_to_skip(self, scenario, sizing, users):
        """Why a run of a row with no connection budget would crowd PostgreSQL out; None if not."""
        if (
            self.database is None
            or sizing.database_connections is not None
            or not scenario.uses_database
        ):
            return None
        possible = min(users or math.inf, sizing.slots or math.inf)
        free = self.database.free() - SPARE_DB_CONNECTIONS
        if possible <= free:
            return None
        upto = "one per request in flight" if math.isinf(possible) else f"up to {possible:,}"
        return (
            f"not run: with no connection budget it would open {upto} database connections, "
            f"and PostgreSQL has {free + SPARE_DB_CONNECTIONS} free"
        )

    def skip_runs(self, row, scenarios, error):
        """A row with `error` for each run of `scenarios` not measured yet."""
        measured = {
            (run["scenario"], run["users"], run["arrival_rate"])
            for run in self.measurements["runs"]
            if run["preset"] == row
        }
        users = (None,) if self.options.capacity else self.options.users
        for scenario in scenarios:
            planned = [(u, None) for u in users] + [(None, r) for r in self.options.arrival_rates]
            for users_, rate in planned:
                if (scenario.name, users_, rate) in measured:
                    continue
                self.measurements["runs"].append(
                    {
                        "preset": row,
                        "scenario": scenario.name,
                        "model": "closed" if rate is None else "open",
                        "users": users_,
                        "arrival_rate": rate,
                        "error": error,
                    }
                )
                self.advance(
                    planned=EXPECTED_SEARCH_STEPS if users_ is None and rate is None else 1
                )

    def settle(self, server):
        """Wait until /healthz answers: requests Locust left behind have been served."""
        self.status(f"{server.preset}: waiting for requests left in its queue")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=SETTLE_TIMEOUT_S):
                pass
        except OSError as exc:
            raise ServerError(f"/healthz did not answer after a run: {exc}") from None
        time.sleep(0.5)  # connections closing, the database's too


def mix_of(scenario):
    """[[weight, request name]]: what a run of `scenario` sends, by the names of its costs."""
{%- if cookiecutter.include_demo_endpoints %}
    return [[request.weight, request.name] for request in scenario.requests] or [[1, scenario.name]]
{%- else %}
    return [[1, scenario.name]]
{%- endif %}


def connect_database():
    """A counter of this database's connections, and what the server says of itself
    (version, max_connections, superuser_reserved_connections); (None, None) without.

    Exits with one line if the settings are bad or DATABASE_URL's server does not answer.
    """
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, connection

    from .sampling import DatabaseConnections

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        sys.exit(f"Configuration error: {exc}")
    if connection.vendor != "postgresql":
        return None, None
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('server_version'),"
                " current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int"
            )
            version, max_connections, reserved = cursor.fetchone()
    except DatabaseError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        host = settings.DATABASES["default"].get("HOST") or "localhost"
        sys.exit(
            f"DATABASE_URL: PostgreSQL at {host} does not answer ({reason}): "
            "start it, or unset DATABASE_URL for devdb.py to bring one"
        )
    finally:
        connection.close()
    return DatabaseConnections(), {
        "version": f"PostgreSQL {version}",
        "max_connections": max_connections,
        "superuser_reserved_connections": reserved,
    }


def choose_scenarios(options, database):
    """The scenarios to run, and those skipped with the reason why."""
    scenarios = []
    skipped = []
{%- if cookiecutter.include_demo_endpoints %}
    for name in options.scenarios:
        scenario = DEMO_SCENARIOS[name]
        if scenario.uses_database and database is None:
            reason = "no PostgreSQL: on SQLite (the first line says why)"
            skipped.append({"scenario": name, "reason": reason})
            console.print(f"[yellow]Skipping the {name} scenario: {reason}")
            continue
        scenarios.append(scenario)
{%- endif %}
    if options.locustfile:
        scenarios.append(from_locustfile(options.locustfile))
    if not scenarios:
        sys.exit("loadtest: no scenario left to run: see the reasons above")
    return scenarios, skipped


def split_cpus(locust_workers, cpus=None):
    """(server CPUs, generator CPUs): separate sets from 2 CPUs on; on one, both share it.

    The generator gets a CPU for each Locust process that makes load, at most half of them;
    the preset sizes itself from the rest, as it would on a machine of its own. `cpus`:
    those this process may use (its affinity).

    Locust spends about 200 us of CPU a request (its HTTP client: FastHttpUser is Locust's
    fastest), about a third of what the gevent preset spends serving /demo/io. Sharing 2
    CPUs with the server, it took half a CPU at the preset's capacity, and the capacity
    search found 2,531 to 2,618 requests/s, 74 to 83 % of what wrk (written in C) reached
    at the same p99: a measure of the generator as much as of the server.
    On a CPU of its own, against the preset on the other, 1,845 to 1,897 requests/s, 93 to
    101 % of wrk's figure (three rounds each). So a 2-CPU machine load-tests a 1-CPU
    server: its capacity per CPU is the preset's, and the sizing (target.py) counts in
    instances of that size.
    """
    if cpus is None:
        if not hasattr(os, "sched_getaffinity"):
            return None, None  # no affinity here: both run wherever the OS puts them
        cpus = os.sched_getaffinity(0)
    cpus = sorted(cpus)
    if len(cpus) < 2:
        return cpus, cpus
    count = max(1, min(len(cpus) // 2, locust_workers or 1))
    return cpus[:-count], cpus[-count:]


def machine(server_cpus, generator_cpus, database_version):
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "server_cpus": server_cpus,
        "generator_cpus": generator_cpus,
        "shared_cpus": server_cpus == generator_cpus,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "database": database_version,
        "versions": installed_versions(VERSIONS),
    }


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
