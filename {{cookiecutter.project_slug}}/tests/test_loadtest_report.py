"""The load test's judgement, on measurements recorded from a real run (tests/data/loadtest).

The recording is a `nox -s loadtest -- --quick` run on 2 CPUs: its measurements.json
and Locust's *_stats.csv files as they were written. Judging them again must give
bounds by the formulas in loadtest/bounds.py, a recommendation that follows its
rule, and the four report files.
"""

import base64
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from loadtest import report
from loadtest.bounds import Bound, Capacity, Cost, bound
from loadtest.generator import read_stats
from loadtest.recommendation import recommend

RECORDED = Path(__file__).parent / "data" / "loadtest"


@pytest.fixture
def results(tmp_path):
    """A copy of the recorded run, for the report to write into."""
    return Path(shutil.copytree(RECORDED, tmp_path / "results"))


@pytest.fixture
def measurements():
    return json.loads((RECORDED / "measurements.json").read_text())


@pytest.fixture
def summary(results):
    return report.write(results)


def row_of(summary, preset, scenario):
    (row,) = (r for r in summary["rows"] if r["preset"] == preset and r["scenario"] == scenario)
    return row


def cost(measurements, preset, name):
    return measurements["presets"][preset]["costs"][name]


def test_each_run_is_a_row_with_locusts_own_numbers(summary, measurements):
    assert len(summary["rows"]) == len(measurements["runs"])
    for row, run in zip(summary["rows"], measurements["runs"], strict=True):
        assert (row["preset"], row["scenario"], row["users"]) == (
            run["preset"],
            run["scenario"],
            run["users"],
        )
        stats = read_stats(RECORDED / run["stats_csv"])
        assert row["error"] is None
        assert (row["rps"], row["p99_ms"], row["failures"]) == (
            stats.rps,
            stats.p99_ms,
            stats.failures,
        )
        assert row["efficiency"] == pytest.approx(row["rps"] / row["bound_rps"])
        assert row["server_cpu"] == run["usage"]["server_cpu"]


def test_read_stats_takes_the_aggregated_row(measurements):
    run = measurements["runs"][0]
    text = (RECORDED / run["stats_csv"]).read_text()
    aggregated = next(line for line in text.splitlines() if ",Aggregated," in line).split(",")
    stats = read_stats(RECORDED / run["stats_csv"])
    assert stats.requests == int(aggregated[2])
    assert stats.failures == int(aggregated[3])
    assert stats.rps == pytest.approx(float(aggregated[9]))
    assert stats.p99_ms == float(aggregated[18])


# Little's law on the recorded sizing and calibration: slots ÷ (known wait + CPU per request).
def test_sync_io_is_bound_by_its_workers(summary, measurements):
    row = row_of(summary, "sync", "io")
    workers = measurements["presets"]["sync"]["sizing"]["workers"]
    service_s = 0.050 + cost(measurements, "sync", "io")["cpu_s"]
    assert row["users"] > workers
    assert row["bound_limit"] == "slots"
    assert row["bound_rps"] == pytest.approx(workers / service_s)


def test_gthread_io_is_bound_by_its_threads(summary, measurements):
    row = row_of(summary, "gthread", "io")
    sizing = measurements["presets"]["gthread"]["sizing"]
    service_s = 0.050 + cost(measurements, "gthread", "io")["cpu_s"]
    assert row["bound_limit"] == "slots"
    assert row["bound_rps"] == pytest.approx(sizing["workers"] * sizing["threads"] / service_s)


def test_gevent_db_is_bound_by_its_database_connections(summary, measurements):
    row = row_of(summary, "gevent", "db")
    connections = measurements["presets"]["gevent"]["sizing"]["database_connections"]
    service_s = 0.050 + cost(measurements, "gevent", "db")["cpu_s"]
    assert row["bound_limit"] == "connections"
    assert row["bound_rps"] == pytest.approx(connections / service_s)
    assert 0 < row["peak_db_connections"] <= connections


def test_cpu_is_bound_by_the_cpus_the_generator_left(summary, measurements):
    row = row_of(summary, "sync", "cpu")
    run = next(r for r in measurements["runs"] if (r["preset"], r["scenario"]) == ("sync", "cpu"))
    cpus = measurements["presets"]["sync"]["sizing"]["cpus"]
    assert measurements["machine"]["shared_cpus"]
    left = cpus - run["usage"]["generator_cpu"]
    # The cheaper of the calibration's CPU time per request and the run's own.
    in_run = run["usage"]["server_cpu"] / row["rps"]
    cpu_s = min(cost(measurements, "sync", "cpu")["cpu_s"], in_run)
    assert row["bound_limit"] == "cpu"
    assert row["bound_rps"] == pytest.approx(left / cpu_s)
    assert row["efficiency"] <= 1.0 + 1e-9  # a run uses no more CPU than it has


def test_the_baseline_is_one_sync_worker(summary, measurements):
    sizing = measurements["presets"]["baseline"]["sizing"]
    assert (sizing["worker_class"], sizing["workers"]) == ("sync", 1)
    row = row_of(summary, "baseline", "io")
    assert row["bound_rps"] == pytest.approx(
        1 / (0.050 + cost(measurements, "baseline", "io")["cpu_s"])
    )


IO = Cost(service_s=0.05, cpu_s=0.001, cycle_s=0.05)
DB = Cost(service_s=0.05, cpu_s=0.002, cycle_s=0.05, uses_database=True)
CPU = Cost(service_s=0.01, cpu_s=0.01, cycle_s=0.01)


@pytest.mark.parametrize(
    ("users", "mix", "capacity", "expected"),
    [
        (10, [(1, IO)], Capacity(24, None, 2), Bound(10 / 0.05, "users")),
        (100, [(1, IO)], Capacity(24, None, 2), Bound(24 / 0.05, "slots")),
        (100, [(1, IO)], Capacity(None, None, 2), Bound(100 / 0.05, "users")),
        (500, [(1, IO)], Capacity(None, None, 2), Bound(2 / 0.001, "cpu")),
        (500, [(1, DB)], Capacity(2000, 40, 2), Bound(40 / 0.05, "connections")),
        (100, [(1, CPU)], Capacity(5, None, 2), Bound(2 / 0.01, "cpu")),
        # 70 % io, 20 % db, 10 % cpu: a mean service time of 0.046 s; 0.2 x 0.05 s of
        # database time per request, on 4 connections: 400 requests/s.
        (100, [(7, IO), (2, DB), (1, CPU)], Capacity(24, 4, 2), Bound(4 / 0.01, "connections")),
    ],
)
def test_the_bound_is_the_least_of_users_slots_connections_and_cpu(users, mix, capacity, expected):
    found = bound(users, mix, capacity)
    assert found.limit == expected.limit
    assert found.rps == pytest.approx(expected.rps)


def test_the_cheaper_cpu_time_counts_the_calibrations_or_the_runs():
    calibrated = bound(100, [(1, CPU)], Capacity(5, None, 2))
    cheaper_in_run = bound(100, [(1, CPU)], Capacity(5, None, 2), cpu_s_in_run=0.008)
    dearer_in_run = bound(100, [(1, CPU)], Capacity(5, None, 2), cpu_s_in_run=0.02)
    assert cheaper_in_run.rps == pytest.approx(2 / 0.008)
    assert dearer_in_run.rps == pytest.approx(calibrated.rps) == pytest.approx(2 / 0.01)


def test_the_generators_cpu_is_not_the_servers_on_shared_cpus():
    alone = bound(100, [(1, CPU)], Capacity(5, None, 2))
    shared = bound(100, [(1, CPU)], Capacity(5, None, 2), generator_cpu_on_shared_cpus=0.5)
    assert shared.rps == pytest.approx(alone.rps * 1.5 / 2)


def qualifying(summary, scenario, slo_p99_ms):
    return [
        row
        for row in summary["rows"]
        if row["scenario"] == scenario
        and row["preset"] != "baseline"
        and row["failures"] == 0
        and row["p99_ms"] <= slo_p99_ms
    ]


@pytest.mark.parametrize("slo_p99_ms", [500, 250, 100, 20])
def test_the_recommendation_is_the_most_throughput_within_the_objective(summary, slo_p99_ms):
    for recommendation in recommend(summary["rows"], slo_p99_ms):
        candidates = qualifying(summary, recommendation["scenario"], slo_p99_ms)
        if not candidates:
            assert recommendation["preset"] is None
            assert "no preset kept p99 within" in recommendation["text"]
            continue
        best = max(candidates, key=lambda row: row["rps"])
        assert recommendation["preset"] == best["preset"]
        assert recommendation["rps"] == best["rps"]
        assert recommendation["memory_per_100_rps_mib"] == pytest.approx(
            best["memory_mib"] / best["rps"] * 100
        )
        assert recommendation["text"].startswith(f"{best['preset']} ({best['sizing']}; ")
        assert recommendation["baseline"].startswith("baseline (1 sync worker): ")


def test_the_recorded_run_recommends_gevent_for_waits_and_says_what_the_baseline_gave(summary):
    by_scenario = {item["scenario"]: item for item in summary["recommendations"]}
    for scenario in ("io", "db"):
        assert by_scenario[scenario]["preset"] == "gevent"
        baseline = row_of(summary, "baseline", scenario)
        assert f"{baseline['rps']:,.0f} req/s" in by_scenario[scenario]["baseline"]


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_report_files(results, summary):
    assert json.loads((results / "summary.json").read_text()) == json.loads(json.dumps(summary))
    markdown = (results / "summary.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(summary["rows"])  # the heading, then a line per run
    assert markdown.index("## Recommendation") < markdown.index("## Runs")

    chart = (results / "summary.png").read_bytes()
    scenarios = {row["scenario"] for row in summary["rows"]}
    width, height = png_size(chart)
    assert width == 1200
    assert height == round(360 * len(scenarios))

    page = (results / "index.html").read_text()
    assert page.index("Recommendation") < page.index("<table>") < page.index("<img")
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(embedded) == chart
    assert page.count("<tr") == 1 + len(summary["rows"])
    for row in summary["rows"]:
        assert f'href="{row["locust_html"]}"' in page
    external = re.findall(r'(?:src|href)="(?:https?:)?//', page)
    assert not external, "the page must render with no network"


def test_a_run_with_an_error_is_a_row_that_says_so(results, measurements):
    measurements["presets"]["gevent"]["error"] = "DATABASE_CONNECTION_BUDGET=1 gives less"
    (results / "measurements.json").write_text(json.dumps(measurements))
    summary = report.write(results)
    failed = [row for row in summary["rows"] if row["error"]]
    assert failed
    assert {row["preset"] for row in failed} == {"gevent"}
    assert "error: DATABASE_CONNECTION_BUDGET=1 gives less" in (results / "summary.md").read_text()
    assert all(item["preset"] != "gevent" for item in summary["recommendations"])
