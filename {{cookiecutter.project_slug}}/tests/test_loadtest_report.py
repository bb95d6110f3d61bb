"""The load test's judgement, on measurements recorded from real runs (tests/data/).

The recordings are a `nox -s loadtest -- --quick` run and a quick capacity search
on 2 CPUs: their measurements.json and Locust's *_stats.csv files as they were
written. Judging them again must give bounds by the formulas in loadtest/bounds.py,
capacities, a search and a sizing that follow their rules, a recommendation that
follows its rule, and the report files.
"""

import base64
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from loadtest import overlay, report
from loadtest.bounds import Bound, Capacity, Cost, bound
from loadtest.generator import read_stats
from loadtest.recommendation import recommend
from loadtest.search import Search
from loadtest.target import HEADROOM, size_for

RECORDED = Path(__file__).parent / "data" / "loadtest"


@pytest.fixture
def results(tmp_path):
    """A copy of the recorded run, for the report to write into."""
    return Path(shutil.copytree(RECORDED, tmp_path / "results"))


@pytest.fixture
def measurements():
    return json.loads((RECORDED / "measurements.json").read_text())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(the results folder, the summary) of the recorded run, judged once for the module's
    readers: writing the report and drawing its chart takes about a second."""
    results = Path(shutil.copytree(RECORDED, tmp_path_factory.mktemp("judged") / "results"))
    return results, report.write(results)


@pytest.fixture
def summary(written):
    return written[1]


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
    assert measurements["machine"]["shared_cpus"]
    cpus, generator_cpu, cpu_s = sync_cpu_run(measurements, row)
    assert row["bound_limit"] == "cpu"
    assert row["bound_rps"] == pytest.approx((cpus - generator_cpu) / cpu_s)
    assert row["efficiency"] <= 1.0 + 1e-9  # a run uses no more CPU than it has


def sync_cpu_run(measurements, row):
    """(the CPU budget, the generator's CPU, the CPU time per request) of the sync cpu run."""
    run = next(r for r in measurements["runs"] if (r["preset"], r["scenario"]) == ("sync", "cpu"))
    # The cheaper of the calibration's CPU time per request and the run's own.
    in_run = run["usage"]["server_cpu"] / row["rps"]
    cpu_s = min(cost(measurements, "sync", "cpu")["cpu_s"], in_run)
    return measurements["presets"]["sync"]["sizing"]["cpus"], run["usage"]["generator_cpu"], cpu_s


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


def test_the_cpu_others_took_is_not_the_servers():
    alone = bound(100, [(1, CPU)], Capacity(5, None, 2))
    shared = bound(100, [(1, CPU)], Capacity(5, None, 2), cpu_taken=0.5)
    assert shared.rps == pytest.approx(alone.rps * 1.5 / 2)


def test_the_upstream_takes_the_servers_cpus_and_the_generator_only_when_it_shares_them():
    usage = {"generator_cpu": 0.4, "upstream_cpu": 0.25}
    assert report.cpu_taken_from_server(usage, shared_cpus=True) == pytest.approx(0.65)
    assert report.cpu_taken_from_server(usage, shared_cpus=False) == pytest.approx(0.25)
    without_upstream = {"generator_cpu": 0.4, "upstream_cpu": None}
    assert report.cpu_taken_from_server(without_upstream, shared_cpus=False) == 0.0


def test_a_generator_on_cpus_of_its_own_leaves_the_server_its_whole_budget(results, measurements):
    measurements["machine"]["shared_cpus"] = False
    (results / "measurements.json").write_text(json.dumps(measurements))
    row = row_of(report.write(results), "sync", "cpu")
    cpus, _, cpu_s = sync_cpu_run(measurements, row)
    assert row["bound_limit"] == "cpu"
    assert row["bound_rps"] == pytest.approx(cpus / cpu_s)


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
        assert recommendation["compared"][-1].startswith("baseline (1 sync worker): ")


def test_the_recorded_run_recommends_gevent_for_waits_and_says_what_the_baseline_gave(summary):
    by_scenario = {item["scenario"]: item for item in summary["recommendations"]}
    for scenario in ("io", "db"):
        assert by_scenario[scenario]["preset"] == "gevent"
        baseline = row_of(summary, "baseline", scenario)
        assert f"{baseline['rps']:,.0f} req/s" in by_scenario[scenario]["compared"][-1]


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_report_files(written):
    results, summary = written
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


# A recorded `nox -s loadtest -- --capacity --quick --presets gthread,gevent,baseline
# --scenarios io,db --duration 2s` on 2 CPUs: every level each search chose, as measured.
RECORDED_SEARCH = Path(__file__).parent / "data" / "loadtest-capacity"
TARGETS = (100, 300, 1000, 1500, 5000, 20000)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """(the results folder, the summary) of the recorded search, judged once; the tests that
    judge it again for a target rewrite its report files, and read only what they wrote."""
    results = tmp_path_factory.mktemp("searched") / "results"
    shutil.copytree(RECORDED_SEARCH, results)
    return results, report.write(results)


def levels_of(summary, preset, scenario):
    return sorted(
        (row for row in summary["rows"] if (row["preset"], row["scenario"]) == (preset, scenario)),
        key=lambda row: row["search_step"],
    )


def test_each_capacity_is_the_best_level_within_the_objective(searched):
    _, summary = searched
    slo = summary["options"]["slo_p99_ms"]
    pairs = {(row["preset"], row["scenario"]) for row in summary["rows"]}
    found = {(c["preset"], c["scenario"]): c for c in summary["capacities"]}
    for preset, scenario in pairs:
        passed = [
            row
            for row in levels_of(summary, preset, scenario)
            if row["failures"] == 0 and row["p99_ms"] <= slo
        ]
        if not passed:
            assert (preset, scenario) not in found
            continue
        best = max(passed, key=lambda row: row["rps"])
        capacity = found[preset, scenario]
        assert (capacity["rps"], capacity["users"]) == (best["rps"], best["users"])
        assert capacity["searched"]
        cpus = summary["presets"][preset]["sizing_fields"]["cpus"]
        assert capacity["per_cpu"] == pytest.approx(best["rps"] / cpus)
        assert capacity["per_gib"] == pytest.approx(best["rps"] / (best["memory_mib"] / 1024))


def test_the_recorded_search_chose_its_levels_by_its_rules(searched):
    """Fed the recorded outcomes, the search asks for the levels the session ran, in order."""
    _, summary = searched
    slo = summary["options"]["slo_p99_ms"]
    for preset, scenario in {(row["preset"], row["scenario"]) for row in summary["rows"]}:
        levels = levels_of(summary, preset, scenario)
        replay = Search(start=levels[0]["users"], quick=True)
        for row in levels:
            assert replay.next_users() == row["users"], (preset, scenario)
            replay.record(
                row["users"],
                passed=row["failures"] == 0 and row["p99_ms"] <= slo,
                rps=row["rps"],
                generator_bound=row["generator_bound"],
            )
        assert replay.next_users() is None  # and it stopped where the session did


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        # Raised until p99 passed the objective, then narrowed twice between 100 and 200.
        ([(50, True, 900), (100, True, 1700), (200, False, 1800)], [141, 168]),
        # Throughput stopped rising twice in a row: saturated, no more steps.
        ([(50, True, 900), (100, True, 920), (200, True, 930)], []),
        # Once could be noise: it goes on raising.
        ([(50, True, 900), (100, True, 700)], [200, 141, 168]),
        # The first level failed already: step down until one passes, then narrow.
        ([(50, False, 90)], [25, 35, 42]),
        # The load generator was the limit: more users would not make more load.
        ([(50, True, 900, True)], []),
    ],
)
def test_the_search_raises_narrows_steps_down_and_stops(outcomes, expected):
    """After the outcomes given, levels under 160 users pass and those above fail."""
    search = Search(start=outcomes[0][0])
    for users, passed, rps, *generator_bound in outcomes:
        assert search.next_users() == users
        search.record(users, passed, rps, *generator_bound)
    chosen = []
    while (users := search.next_users()) is not None:
        chosen.append(users)
        search.record(users, users < 160, 1700 + users)  # gaining until it fails
    assert chosen == expected


def test_the_search_starts_at_half_the_users_littles_law_saturates():
    assert Search.from_prediction(2000 * 0.05).start == 50
    assert Search.from_prediction(float("inf")).start == 10
    assert Search.from_prediction(0.4).start == 1


def database(max_connections=100, reserved=3):
    return {"max_connections": max_connections, "superuser_reserved_connections": reserved}


@pytest.mark.parametrize("target", TARGETS)
def test_sizing_serves_the_target_with_headroom(searched, target):
    results, _ = searched
    summary = report.write(results, target_rps=target)
    for sized in summary["target"]:
        per_instance = sized["capacity_rps"] * (1 - HEADROOM)
        assert sized["instances"] >= 2
        assert sized["instances"] * per_instance >= target
        assert (sized["instances"] - 1) * per_instance < target or sized["instances"] == 2
        assert sized["max_instances"] >= sized["instances"]
        assert sized["cpu_limit"] == summary["presets"][sized["preset"]]["sizing_fields"]["cpus"]
        assert 0 < sized["cpu_request"] <= sized["cpu_limit"]
        assert sized["memory_request_mib"] <= sized["memory_limit_mib"]


@pytest.mark.parametrize("target", TARGETS)
def test_database_connections_fit_postgresql_or_the_report_says_what_is_the_limit(searched, target):
    results, _ = searched
    summary = report.write(results, target_rps=target)
    measured = json.loads((results / "measurements.json").read_text())["database"]
    available = measured["max_connections"] - measured["superuser_reserved_connections"] - 5
    for sized in (each for each in summary["target"] if each["scenario"] == "db"):
        plan = sized["database"]
        assert plan["max_connections"] == measured["max_connections"]  # read from the server
        busy = plan["busy_connections"]
        assert busy == pytest.approx(target * 0.05, rel=0.1)  # Little's law: 50 ms each
        if busy / (1 - HEADROOM) > available:
            assert plan["limit"] == "database"
            assert plan["text"].startswith("the database is the limit, not the web tier")
        elif plan["limit"] == "web tier":
            assert plan["web_tier_connections"] > available
            assert busy <= plan["pgbouncer_pool"] <= available
            assert "PgBouncer" in plan["text"]
        else:
            assert plan["limit"] is None
            assert plan["web_tier_connections"] <= available
            assert plan["budget_per_instance"] >= busy / sized["instances"]


def test_a_target_beyond_the_databases_connections_says_so_and_names_pgbouncer(searched):
    results, _ = searched
    summary = report.write(results, target_rps=5000)  # 5,000 x 50 ms = 250 busy connections
    (db,) = [each for each in summary["target"] if each["scenario"] == "db" and each["recommended"]]
    assert db["database"]["limit"] == "database"
    assert "Sized for 5,000 requests/s" in (results / "summary.md").read_text()
    # Enough PostgreSQL for the busy ones, too few for every instance's budget: PgBouncer.
    preset = {**summary["presets"][db["preset"]], "database_seconds_per_request": 0.05}
    capacity = next(
        c for c in summary["capacities"] if (c["preset"], c["scenario"]) == (db["preset"], "db")
    )
    plan = size_for(5000, capacity, preset, database(max_connections=1000))["database"]
    assert plan["limit"] == "web tier" or plan["web_tier_connections"] <= 1000 - 3 - 5
    tight = size_for(5000, capacity, preset, database(max_connections=400))["database"]
    assert tight["limit"] == "web tier", tight
    assert "DJANGO_DB_TRANSACTION_POOLING=true" in tight["text"]
    assert tight["pgbouncer_pool"] >= 250


def test_the_recommended_preset_gets_an_overlay_with_the_sizing(searched):
    results, _ = searched
    summary = report.write(results, target_rps=1000)
    for sized in (each for each in summary["target"] if each["recommended"]):
        text = overlay.render(sized, f"../{sized['preset']}")
        assert f"  - ../{sized['preset']}\n" in text
        assert f"        value: {sized['instances']}\n" in text  # replicas and minReplicas
        assert f"        value: {sized['max_instances']}\n" in text
        assert f"DATABASE_CONNECTION_BUDGET={sized['database']['budget_per_instance']}" in text
        assert f"memory: {sized['memory_limit_mib']}Mi" in text
        assert ("DJANGO_DB_TRANSACTION_POOLING=true" in text) == (
            sized["database"]["limit"] == "web tier"
        )


def test_an_open_model_run_is_bounded_by_the_rate_offered():
    offered = bound(None, [(1, IO)], Capacity(2000, None, 2), offered_rps=300)
    assert (offered.limit, offered.rps) == ("offered", 300)
    saturated = bound(None, [(1, IO)], Capacity(24, None, 2), offered_rps=1000)
    assert (saturated.limit, saturated.rps) == ("slots", pytest.approx(24 / 0.05))
