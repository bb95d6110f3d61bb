"""The load test's options: defaults, and one line for each bad value, before anything starts."""

import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.options import ALL_PRESETS, DEFAULT_USERS, QUICK_USERS, parse
from loadtest.run import split_cpus
from loadtest.server import granian_installed, servers

PROJECT_DIR = Path(__file__).resolve().parent.parent


def test_defaults_run_every_preset_at_every_user_count(tmp_path):
{%- if cookiecutter.include_demo_endpoints %}
    options = parse([])
    assert options.scenarios == ("io", "io-async", "db", "cpu", "upstream", "mixed")
{%- else %}
    locustfile = tmp_path / "checkout.py"
    locustfile.write_text("")
    options = parse(["--locustfile", str(locustfile)])
{%- endif %}
    rows = ("sync", "gthread", "gevent", "asgi", "baseline", "stock", "granian")
    assert rows == ALL_PRESETS
    assert options.presets == tuple(row for row in rows if row != "granian" or granian_installed())
    assert options.users == DEFAULT_USERS
    assert options.duration_s == 15
    assert options.slo_p99_ms == 500
    assert options.workers == 0
    assert (options.capacity, options.arrival_rates, options.target_rps) == (False, (), None)


def test_stock_rows_follow_their_presets_and_the_comparisons_come_last():
    assert servers(("gevent", "sync", "stock", "baseline")) == [
        "gevent",
        "stock-gevent",
        "sync",
        "stock-sync",
        "baseline",
    ]
    assert servers(("stock",)) == [
        f"stock-{preset}" for preset in ("sync", "gthread", "gevent", "asgi")
    ]
    assert servers(("granian", "asgi")) == ["asgi", "granian"]


def test_capacity_runs_shorter_steps_and_picks_its_own_user_counts(tmp_path):
    locustfile = tmp_path / "checkout.py"
    locustfile.write_text("")
    options = parse(["--capacity", "--locustfile", str(locustfile)])
    assert options.capacity
    assert options.users == ()
    assert options.duration_s == 5
    assert parse(["--capacity", "--quick", "--locustfile", str(locustfile)]).duration_s == 3
{%- if cookiecutter.include_demo_endpoints %}


def test_arrival_rates_alone_run_the_open_model_only_and_with_users_both():
    only = parse(["--arrival-rate", "800,200,400"])
    assert only.arrival_rates == (200, 400, 800)
    assert only.users == ()
    both = parse(["--arrival-rate", "200", "--users", "20", "--target-rps", "5000"])
    assert (both.users, both.arrival_rates, both.target_rps) == ((20,), (200,), 5000)
{%- endif %}


def test_quick_is_one_user_count_and_a_short_run(tmp_path):
    locustfile = tmp_path / "checkout.py"
    locustfile.write_text("")
    options = parse(["--quick", "--locustfile", str(locustfile)])
    assert options.users == QUICK_USERS
    assert len(options.users) == 1
    assert options.duration_s < 15
    # Every row, granian's only where it is installed (the granian extra).
    assert options.presets == tuple(
        row for row in ALL_PRESETS if row != "granian" or granian_installed()
    )
{%- if cookiecutter.include_demo_endpoints %}
    assert options.scenarios == ()  # a Locust file of yours replaces the demo scenarios
{%- endif %}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--duration", "90s"], 90),
        (["--duration", "2m"], 120),
        (["--duration", "1m30s"], 90),
        (["--duration", "20"], 20),
    ],
)
def test_durations(argv, expected, tmp_path):
    locustfile = tmp_path / "checkout.py"
    locustfile.write_text("")
    assert parse([*argv, "--locustfile", str(locustfile)]).duration_s == expected


def results_folders():
    results = PROJECT_DIR / "loadtest-results"
    return set(results.iterdir()) if results.is_dir() else set()


def run_loadtest(*args):
    return subprocess.run(
        [sys.executable, "-m", "loadtest", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


BAD_VALUES = {
    "presets": (["--presets", "sync,eventlet"], "argument --presets: 'eventlet' is not a preset"),
    "users": (["--users", "10,abc"], "argument --users: '10,abc' is not a list of user counts"),
    "no users": (["--users", "0"], "argument --users: '0' is not a list of user counts"),
    "duration": (["--duration", "soon"], "argument --duration: 'soon' is not a duration"),
    "too long": (["--duration", "2h"], "argument --duration: '2h' is not a duration"),
    "latency": (["--slo-p99", "fast"], "argument --slo-p99: 'fast' is not a latency"),
    "workers": (["--workers", "many"], "argument --workers: 'many' is not a number"),
    "locustfile": (["--locustfile", "missing.py"], "argument --locustfile: 'missing.py': no such"),
    "rate": (["--arrival-rate", "fast"], "argument --arrival-rate: 'fast' is not a list of"),
    "no rate": (["--arrival-rate", "0"], "argument --arrival-rate: '0' is not a list of arrival"),
    "target": (["--target-rps", "-5"], "argument --target-rps: '-5' is not a rate"),
    "capacity": (["--capacity", "--users", "10"], "argument --users: --capacity searches"),
{%- if cookiecutter.include_demo_endpoints %}
    "scenarios": (["--scenarios", "io,disk"], "argument --scenarios: 'disk' is not a scenario"),
{%- endif %}
}


@pytest.mark.parametrize(("argv", "expected"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_is_one_line_before_anything_starts(argv, expected):
    before = results_folders()
    result = run_loadtest(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"loadtest: {expected}"), lines[0]
    assert results_folders() == before
{%- if not cookiecutter.include_demo_endpoints %}


def test_without_demo_endpoints_there_is_no_open_model(tmp_path):
    locustfile = tmp_path / "checkout.py"
    locustfile.write_text("")
    result = run_loadtest("--arrival-rate", "100", "--locustfile", str(locustfile))
    assert result.returncode == 2
    assert result.stderr.startswith("loadtest: argument --arrival-rate: the open model runs")


def test_without_demo_endpoints_a_locust_file_of_yours_is_needed():
    before = results_folders()
    result = run_loadtest("--quick")
    assert results_folders() == before
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "loadtest: no scenario to run: this project has no demo endpoints, so pass your own "
        "Locust file with --locustfile PATH"
    )
{%- endif %}


@pytest.mark.parametrize(
    ("locust_workers", "cpus", "server", "generator"),
    [
        (0, [0], [0], [0]),  # 1 CPU: shared, and the report says so
        (0, [0, 1], [0], [1]),  # 2 CPUs: a 1-CPU server, load from the other
        (4, [0, 1], [0], [1]),
        (0, [0, 1, 2], [0, 1], [2]),
        (0, [0, 1, 2, 3], [0, 1, 2], [3]),
        (2, [0, 1, 2, 3], [0, 1], [2, 3]),
        (8, [0, 1, 2, 3], [0, 1], [2, 3]),  # never more than half
        (3, [4, 5, 6, 7, 8, 9, 10, 11], [4, 5, 6, 7, 8], [9, 10, 11]),
    ],
)
def test_the_generator_gets_cpus_of_its_own_from_2_on(locust_workers, cpus, server, generator):
    assert split_cpus(locust_workers, cpus) == (server, generator)
