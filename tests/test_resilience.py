"""The generated project's resilience session (`nox -s resilience`) as a user runs it: every
preset broken on purpose, with real gunicorn processes and signals, and the local PostgreSQL
behind the session's own proxy.

The assertions are the issue's requirements, read from summary.json, not the session's own
verdict: zero lost in a drain, 503 rather than 500 or a hang while the database is away, a
full recovery, slow clients that cannot stall gevent and asgi, a 413 before a large body.
One quick run of everything serves most tests; the other driver gets its own database
outage.
"""

import json
import shutil

import pytest
from test_presets import run

pytestmark = pytest.mark.slow

PRESETS = ("sync", "gthread", "gevent", "asgi")
SCENARIOS = ("drain", "worker-crash", "hung-request", "db-outage", "slowloris", "large-body")
DRAIN_CLIENTS = 50
GRACEFUL_TIMEOUT_S = 25  # base.py
CONCURRENCY = {"sync": 1, "gthread": 8, "gevent": 1000}  # per worker, on the defaults
UNAVAILABLE_WITHIN_S = 3.0
RECOVERED_WITHIN_S = 5.0
HEAD_TIMEOUT_S = 10.0
SLOW_CONNECTIONS = 30


@pytest.fixture(scope="module")
def project(installed_project):
    return installed_project()


def resilience(project, *args, timeout=420, **env):
    """`python -m resilience ARGS` in the project, as `nox -s resilience -- ARGS` runs it."""
    return run(project, project.bin("python"), "-m", "resilience", *args, timeout=timeout, **env)


def latest_summary(project):
    return json.loads((project.path / "resilience-results/latest/summary.json").read_text())


@pytest.fixture(scope="module")
def quick_run(project, module_database):
    """Every scenario against every preset, quick: (the command's result, summary.json)."""
    result = resilience(project, "--quick", DATABASE_URL=module_database)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result, latest_summary(project)


def rows_of(summary, scenario, via="direct"):
    """{preset: row} of one scenario."""
    return {
        row["preset"]: row
        for row in summary["rows"]
        if row["scenario"] == scenario and row["via"] == via
    }


def failing_checks(summary):
    return [
        f"{row['scenario']} {row['preset']} ({row['via']}): expected {check['expectation']}; "
        f"saw {check['seen']}"
        for row in summary["rows"]
        for check in row["checks"]
        if not check["ok"]
    ] + [
        f"{row['scenario']} {row['preset']} ({row['via']}): {row['error']}"
        for row in summary["rows"]
        if row["error"]
    ]


def test_a_bad_option_is_one_line_and_exit_status_2(project):
    for args, message in (
        (["--presets", "eventlet"], "argument --presets: 'eventlet' is not a preset"),
        (["--scenarios", "drain,chaos"], "argument --scenarios: 'chaos' is not a scenario"),
    ):
        result = resilience(project, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"resilience: {message}: use ")
        assert result.stderr.count("\n") == 1, result.stderr


def test_every_scenario_runs_against_every_preset(quick_run):
    _, summary = quick_run
    direct = {(row["scenario"], row["preset"]) for row in summary["rows"] if row["via"] == "direct"}
    assert direct == {(scenario, preset) for scenario in SCENARIOS for preset in PRESETS}
    assert [row for row in summary["rows"] if row["error"]] == []
    for row in summary["rows"]:
        if not row["skipped"]:
            assert row["sent"] == row["answered"] + row["failed"] + row["lost"], row


def test_the_session_passes_and_says_so_in_its_exit_status(quick_run):
    result, summary = quick_run
    assert summary["ok"] == (result.returncode == 0)
    assert not failing_checks(summary), "\n".join(failing_checks(summary))
    assert result.returncode == 0


def test_the_results_folder_and_the_table(project, quick_run):
    result, summary = quick_run
    latest = project.path / "resilience-results" / "latest"
    assert latest.is_symlink()
    assert latest.resolve().parent == project.path / "resilience-results"
    assert (latest / "drain-sync.log").is_file()
    assert summary["machine"]["database_driver"] == "psycopg"
    assert summary["options"] == {
        "presets": list(PRESETS),
        "scenarios": list(SCENARIOS),
        "quick": True,
    }
    assert "Resilience: every scenario against every preset" in result.stdout
    for heading in ("sent", "answered", "failed", "lost", "recovery s"):
        assert heading in result.stdout


def test_a_drain_answers_every_request_in_flight(quick_run):
    _, summary = quick_run
    for preset, row in rows_of(summary, "drain").items():
        assert row["sent"] == DRAIN_CLIENTS, (preset, row)
        assert row["lost"] == 0, (preset, row)
        assert row["answered"] == DRAIN_CLIENTS, (preset, row)
        assert row["details"]["returncode"] == 0, (preset, row)
        assert row["details"]["exit_s"] <= GRACEFUL_TIMEOUT_S, (preset, row)


def test_a_killed_worker_is_replaced_and_only_its_requests_are_lost(quick_run):
    _, summary = quick_run
    for preset, row in rows_of(summary, "worker-crash").items():
        details = row["details"]
        assert details["replaced_s"] is not None, (preset, row)
        assert details["replaced_s"] <= 2.0, (preset, row)
        assert row["lost"] <= details["killed_worker_held"], (preset, row)
        if preset in CONCURRENCY:
            assert details["killed_worker_held"] <= CONCURRENCY[preset], (preset, row)
        assert row["failed"] == 0, (preset, row)
        assert row["answered"] > 0, (preset, row)


def test_a_hung_request_kills_only_a_sync_worker_and_the_others_keep_answering(quick_run):
    _, summary = quick_run
    for preset, row in rows_of(summary, "hung-request").items():
        assert row["sent"] > 0, (preset, row)
        assert row["answered"] == row["sent"], (preset, row)
        long_request = row["details"]["long_request"]
        if preset == "sync":
            # The timeout is the longest a sync worker's request may run: killed, replaced.
            assert row["details"]["worker_timeout"], row
            assert row["details"]["worker_replaced"], row
            assert long_request["status"] != 200, row
        else:
            # The timeout watches the worker's main loop only: the request runs to its end.
            assert not row["details"]["worker_timeout"], (preset, row)
            assert long_request["status"] == 200, (preset, row)


def assert_outage_handled(preset, row):
    """503 (never 500, never a hang) while the database is away, then a full recovery."""
    details = row["details"]
    assert row["lost"] == 0, (preset, row)
    for path in ("/demo/db", "/readyz"):
        during = details["during"][path]
        assert 503 in during["statuses"], (preset, path, during)
        assert set(during["statuses"]) <= {200, 503}, (preset, path, during)
        assert during["unanswered"] == 0, (preset, path, during)
        assert during["early_200"] == 0, (preset, path, during)  # the outage was real
        assert during["slowest_s"] <= UNAVAILABLE_WITHIN_S, (preset, path, during)
    assert details["recovery_s"] is not None, (preset, row)
    assert details["recovery_s"] <= RECOVERED_WITHIN_S, (preset, row)
    assert details["errors_after_recovery"] == 0, (preset, row)


def assert_outages_handled(rows):
    """assert_outage_handled for every preset's row, reporting all of them that fail."""
    problems = []
    for preset, row in rows.items():
        try:
            assert_outage_handled(preset, row)
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_a_database_outage_is_a_quick_503_then_a_full_recovery(quick_run):
    _, summary = quick_run
    rows = rows_of(summary, "db-outage")
    assert set(rows) == set(PRESETS)
    assert_outages_handled(rows)


def test_a_database_outage_with_psycopg2(installed_project, module_database):
    project = installed_project(database_driver="psycopg2")
    # gthread keeps Django's persistent connections, gevent the kit's own psycopg2 pool.
    result = resilience(
        project,
        "--quick",
        "--scenarios",
        "db-outage",
        "--presets",
        "gthread,gevent",
        DATABASE_URL=module_database,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    summary = latest_summary(project)
    assert summary["machine"]["database_driver"] == "psycopg2"
    rows = rows_of(summary, "db-outage")
    assert set(rows) == {"gthread", "gevent"}
    assert_outages_handled(rows)


def test_slow_clients_cannot_stall_gevent_and_asgi(quick_run):
    _, summary = quick_run
    rows = rows_of(summary, "slowloris")
    for preset in ("gevent", "asgi"):
        row, details = rows[preset], rows[preset]["details"]
        assert row["sent"] > 0, row
        assert row["answered"] == row["sent"], row
        assert details["healthz_stalled"] == 0, row
        # Each slow connection is closed once its head has taken HEAD_TIMEOUT_S.
        assert details["closed_by_server"] == SLOW_CONNECTIONS, row
        for after in details["closed_after_s"]:
            assert HEAD_TIMEOUT_S - 1 <= after <= HEAD_TIMEOUT_S + 2, row
    for preset in ("sync", "gthread"):
        # Built for a buffering proxy: without one they stall, a failure the scenario forces.
        row = rows[preset]
        assert row["lost"] == 0, row
        if row["failed"]:
            assert "needs the proxy" in " ".join(row["notes"]), row
        assert row["ok"], row  # and they serve again once the slow clients are gone


def test_slow_clients_stall_no_preset_behind_nginx(quick_run):
    _, summary = quick_run
    rows = rows_of(summary, "slowloris", via="nginx")
    assert set(rows) == set(PRESETS)
    if shutil.which("nginx") is None:
        for row in rows.values():
            assert row["skipped"] == "nginx is not on PATH", row
        pytest.skip("nginx is not installed (apt-get install nginx)")
    for preset, row in rows.items():
        assert row["skipped"] is None, row
        assert row["sent"] > 0, (preset, row)
        assert row["answered"] == row["sent"], (preset, row)
        assert row["details"]["healthz_stalled"] == 0, (preset, row)


def test_a_large_body_gets_413_before_it_is_sent(quick_run):
    _, summary = quick_run
    for preset, row in rows_of(summary, "large-body").items():
        details = row["details"]
        assert details["status"] == 413, (preset, row)
        assert details["answered_before_body"], (preset, row)
        assert details["bytes_sent"] < 1024 * 1024, (preset, row)  # of the 50 MB declared
        assert details["seconds"] < 1.0, (preset, row)
        assert details["closed_after_answer"], (preset, row)
        assert row["lost"] == 0, (preset, row)
