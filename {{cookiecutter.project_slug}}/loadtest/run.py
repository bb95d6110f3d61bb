"""Measure every preset under every scenario and user count: `nox -s loadtest`.

For each preset in turn: read its sizing from gunicorn (--print-config), start
it as a real process against DATABASE_URL, wait for /readyz, calibrate what
each kind of request costs it, then run Locust once per scenario and user
count while sampling the server, the generator and the database. Everything
measured goes to loadtest-results/<timestamp>/measurements.json as it is
measured; report.py then judges it: bounds, table, chart, page, recommendation.

A preset that fails to start gets its one-line error in the report; the others
still run, and the session then exits non-zero. Ctrl-C (or SIGTERM) stops
every server and Locust process it started, and exits non-zero.

Without DATABASE_URL, devdb.py finds or brings a PostgreSQL for the session and
removes it at the end: the first line printed says which.
"""

import json
import os
import platform
import sys
import time
import urllib.request
from dataclasses import asdict

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import devdb

from . import calibration, generator, report
{%- if cookiecutter.include_demo_endpoints %}
from .demo import DEMO_SCENARIOS
{%- endif %}
from .options import parse
from .results import new_results_dir, now
from .sampling import tree_cpu_seconds
from .scenarios import from_locustfile
from .server import PROJECT_DIR, SERVER_ENVIRONMENT, ServerError, print_config, running_server
from .session import Interrupted, console, installed_versions, interrupt_on_sigterm
from .sizing import Sizing

RESULTS_DIR = PROJECT_DIR / "loadtest-results"
CALIBRATION_USERS = 1
CALIBRATION_S = 4.0
# After a run, requests Locust gave up on may still wait in the listen backlog (one
# sync worker with 500 of them queued: 25 s of /demo/io?ms=50): the next run waits.
SETTLE_TIMEOUT_S = 120.0
VERSIONS = ("django", "gunicorn", "gevent", "locust", "psycopg", "psycopg2-binary", "uvloop")


def main(argv=None):
    options = parse(argv)
    with devdb.database() as database:
        console.print(database.note, markup=False, highlight=False, soft_wrap=True)
        return measure(options)


def measure(options):
    os.environ.update(SERVER_ENVIRONMENT)  # the sampler's Django settings match the servers'
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    database, database_version = connect_database()
    scenarios, skipped = choose_scenarios(options, database)
    cpus = split_cpus(options.workers)
    results = new_results_dir(RESULTS_DIR)
    measurements = {
        "started_at": now(),
        "machine": machine(*cpus, database_version),
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
        self.runs = [
            (preset, scenario, users)
            for preset in options.presets
            for scenario in scenarios
            for users in options.users
        ]
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("starting", total=len(self.runs))
        self.done = 0

    def save(self):
        path = self.results / "measurements.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self.measurements, indent=2))
        partial.replace(path)

    def run_all(self):
        with self.progress:
            for preset in self.options.presets:
                self.measure_preset(preset)

    def status(self, text):
        number = min(self.done + 1, len(self.runs))
        self.progress.update(self.task, description=f"run {number}/{len(self.runs)} {text}")

    def measure_preset(self, preset):
        record = {"sizing": None, "startup_line": None, "costs": {}, "error": None}
        self.measurements["presets"][preset] = record
        log_path = self.results / f"server-{preset}.log"
        record["log"] = log_path.name
        self.status(f"{preset}: starting")
        try:
            sizing = Sizing.from_print_config(
                print_config(preset, self.server_cpus), self.server_cpus
            )
            with running_server(preset, log_path, cpus=self.server_cpus) as server:
                record["startup_line"] = server.startup_line()
                sizing = sizing.with_startup_line(record["startup_line"])
                record["sizing"] = asdict(sizing)
                self.save()
                record["costs"] = self.calibrate(preset, server)
                for scenario in self.scenarios:
                    for users in self.options.users:
                        self.measure_run(preset, scenario, users, server)
                        self.settle(server)
        except (ServerError, calibration.CalibrationError, generator.LocustError) as exc:
            record["error"] = str(exc)
            self.progress.console.print(f"[red]{preset}: {exc}")
            self.skip_remaining_runs(preset, str(exc))
        self.save()

    def calibrate(self, preset, server):
        costs = {}
        for scenario in self.scenarios:
{%- if cookiecutter.include_demo_endpoints %}
            for request in scenario.requests:
                if request.name not in costs:
                    self.status(f"{preset}: calibrating {request.calibration_path}")
                    costs[request.name] = asdict(calibration.calibrate_request(server, request))
            if scenario.requests:
                continue
{%- endif %}
            self.status(f"{preset} {scenario.name}: calibrating with one user")
            costs[scenario.name] = asdict(self.calibrate_locustfile(preset, scenario, server))
        return costs

    def calibrate_locustfile(self, preset, scenario, server):
        prefix = self.results / f"{preset}-{scenario.name}-calibration"
        cpu_before = tree_cpu_seconds(server.process.pid)
        stats, _ = generator.run(
            scenario, server, CALIBRATION_USERS, CALIBRATION_S, prefix, cpus=self.generator_cpus
        )
        cpu_s = tree_cpu_seconds(server.process.pid) - cpu_before
        return calibration.cost_from_locust_run(scenario.name, stats, cpu_s)

    def measure_run(self, preset, scenario, users, server):
        name = f"{preset}-{scenario.name}-{users}"
        run = {
            "preset": preset,
            "scenario": scenario.name,
            "users": users,
{%- if cookiecutter.include_demo_endpoints %}
            "mix": [[request.weight, request.name] for request in scenario.requests]
            or [[1, scenario.name]],
{%- else %}
            "mix": [[1, scenario.name]],
{%- endif %}
            "stats_csv": f"{name}_stats.csv",
            "locust_html": f"{name}.html",
            "locust_log": f"{name}.locust.log",
            "usage": None,
            "error": None,
        }
        self.measurements["runs"].append(run)
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
            self.status(f"{preset} {scenario.name} {users} users: {state}, {rps:,.0f} req/s")

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
            )
            run["usage"] = asdict(usage)
            self.progress.console.print(
                f"{preset} {scenario.name} {users} users: {stats.rps:,.0f} req/s, "
                f"p99 {stats.p99_ms:,.0f} ms, {stats.failures} failed"
            )
        except generator.LocustError as exc:
            run["error"] = str(exc)
            self.progress.console.print(f"[red]{name}: {exc}")
        self.done += 1
        self.progress.advance(self.task)
        self.save()

    def skip_remaining_runs(self, preset, error):
        measured = {
            (run["scenario"], run["users"])
            for run in self.measurements["runs"]
            if run["preset"] == preset
        }
        for _, scenario, users in (run for run in self.runs if run[0] == preset):
            if (scenario.name, users) not in measured:
                self.measurements["runs"].append(
                    {"preset": preset, "scenario": scenario.name, "users": users, "error": error}
                )
                self.done += 1
                self.progress.advance(self.task)

    def settle(self, server):
        """Wait until /healthz answers: requests Locust left behind have been served."""
        self.status(f"{server.preset}: waiting for requests left in its queue")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=SETTLE_TIMEOUT_S):
                pass
        except OSError as exc:
            raise ServerError(f"/healthz did not answer after a run: {exc}") from None
        time.sleep(0.5)  # connections closing, the database's too


def connect_database():
    """A counter of this database's connections, and PostgreSQL's version; (None, None) without.

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
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
    except DatabaseError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        host = settings.DATABASES["default"].get("HOST") or "localhost"
        sys.exit(
            f"DATABASE_URL: PostgreSQL at {host} does not answer ({reason}): "
            "start it, or unset DATABASE_URL for devdb.py to bring one"
        )
    finally:
        connection.close()
    return DatabaseConnections(), f"PostgreSQL {version}"


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
    """(server CPUs, generator CPUs): separate sets on 4 CPUs or more, else both share all.

    The generator gets a CPU for each Locust process that makes load, at most half of them;
    the preset sizes itself from the rest, as it would on a machine of its own. `cpus`:
    those this process may use (its affinity).
    """
    if cpus is None:
        if not hasattr(os, "sched_getaffinity"):
            return None, None  # no affinity here: both run wherever the OS puts them
        cpus = os.sched_getaffinity(0)
    cpus = sorted(cpus)
    if len(cpus) < 4:
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
