"""Run the chosen scenarios against the chosen presets; print the table, write summary.json.

Scenario by scenario, preset by preset, each on a server of its own. A preset
that does not start gets its one-line error in its row and the others still
run. summary.json is rewritten after every row, in
resilience-results/<timestamp>/ beside the servers' logs, and
resilience-results/latest points at it. Exit status: 0 when every expectation
holds, 1 when one does not (a request lost, a 500, a server that would not
start), 2 for a bad option, 130 when interrupted (Ctrl-C or SIGTERM), every
server, proxy and nginx it started stopped.
"""

import platform
import sys
from dataclasses import asdict
from importlib.util import find_spec
from urllib.parse import urlsplit

from environs import Env

import devdb
from loadtest.results import new_results_dir, now
from loadtest.server import PROJECT_DIR, ServerError, print_config
from loadtest.session import Interrupted, console, installed_versions, interrupt_on_sigterm

from . import nginx
from .options import parse
from .proxy import reachable, upstream_of
from .report import Row, print_report, write_summary
from .scenarios import SCENARIOS
from .scenarios.context import Context

RESULTS_DIR = PROJECT_DIR / "resilience-results"
VERSIONS = ("django", "gunicorn", "gevent", "uvloop", "psycopg", "psycopg2-binary")


def main(argv=None):
    options = parse(argv)
    with devdb.database() as database:
        console.print(database.note, markup=False, highlight=False, soft_wrap=True)
        return run_scenarios(options)


def run_scenarios(options):
    database_url = postgresql_url()
    if database_url and not reachable(*upstream_of(database_url)):
        host, port = upstream_of(database_url)
        sys.exit(
            f"DATABASE_URL: PostgreSQL at {host}:{port} does not answer: start it, "
            "or unset DATABASE_URL for devdb.py to bring one"
        )
    results = new_results_dir(RESULTS_DIR)
    summary = {
        "started_at": now(),
        "options": asdict(options),
        "machine": machine(),
        "nginx_unavailable": nginx.unavailable(),  # None: slowloris runs through it too
    }
    rows = []
    interrupt_on_sigterm()
    try:
        config, broken = read_configs(options.presets)
        context = Context(results, options.quick, database_url, config)
        for scenario in options.scenarios:
            for preset in options.presets:
                if preset in broken:
                    rows.append(Row(scenario, preset, error=broken[preset]))
                    continue
                rows += run_one(scenario, preset, context)
                write_summary(results / "summary.json", summary, rows)
    except (KeyboardInterrupt, Interrupted):
        write_summary(results / "summary.json", summary, rows)
        console.print(
            "[red]Interrupted: every server, proxy and nginx it started is stopped. "
            f"What was seen so far: {results / 'summary.json'}"
        )
        return 130
    summary["finished_at"] = now()
    written = write_summary(results / "summary.json", summary, rows)
    print_report(console, rows, results)
    return 0 if written["ok"] else 1


def run_one(scenario, preset, context):
    with console.status(f"{scenario} {preset}"):
        try:
            rows = SCENARIOS[scenario](preset, context)
        except ServerError as exc:
            rows = [Row(scenario, preset, error=f"did not start: {exc}")]
    for row in rows:
        if row.skipped:
            said = f"[yellow]skipped: {row.skipped}"
        elif row.error:
            said = f"[red]{row.error}"
        else:
            verdict = "[green]ok" if row.ok else "[red]FAIL"
            said = (
                f"{row.sent} sent, {row.answered} answered, {row.failed} failed, "
                f"{row.lost} lost: {verdict}"
            )
        console.print(f"{scenario} {preset} ({row.via}): {said}")
    return rows


def read_configs(presets):
    """Each preset's gunicorn settings, and the presets that cannot start, with why."""
    config, broken = {}, {}
    for preset in presets:
        try:
            config[preset] = print_config(preset)
        except ServerError as exc:
            broken[preset] = f"did not start: {exc}"
    return config, broken


def postgresql_url():
    """DATABASE_URL as the servers will read it (the environment, else .env), if PostgreSQL."""
    env = Env()
    env.read_env(PROJECT_DIR / ".env", recurse=False)
    url = env.str("DATABASE_URL", "")
    return url if urlsplit(url).scheme in ("postgres", "postgresql", "pgsql") else None


def machine():
    return {
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        # Django's PostgreSQL backend takes psycopg 3 whenever it is installed.
        "database_driver": "psycopg" if find_spec("psycopg") else "psycopg2",
        "versions": installed_versions(VERSIONS),
    }
