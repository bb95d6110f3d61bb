"""The generated project's load test (`nox -s loadtest`) as a user runs it: real gunicorn,
real Locust, the local PostgreSQL, short runs.

What the numbers must reach is the session's business (its report and the README);
here each run must happen, be measured, be judged and be written up, and leave no
process behind.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_presets import environment, run

pytestmark = pytest.mark.slow

QUICK = ["--quick", "--duration", "3s"]
DEFAULT_BUDGET = 40  # DATABASE_CONNECTION_BUDGET's default


@pytest.fixture(scope="module")
def project(installed_project):
    return installed_project()


def loadtest(project, *args, timeout=600, **env):
    """`python -m loadtest ARGS` in the project, as `nox -s loadtest -- ARGS` runs it."""
    return run(project, project.bin("python"), "-m", "loadtest", *args, timeout=timeout, **env)


def latest(project):
    return (project.path / "loadtest-results" / "latest").resolve()


@pytest.fixture(scope="module")
def quick_run(project, module_database):
    """Two presets, two scenarios, one user count: (the command's result, its results folder)."""
    result = loadtest(
        project,
        *QUICK,
        "--presets",
        "gevent,baseline",
        "--scenarios",
        "io,db",
        DATABASE_URL=module_database,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result, latest(project)


def test_every_run_is_measured_and_judged(quick_run):
    _, results = quick_run
    summary = json.loads((results / "summary.json").read_text())
    rows = {(row["preset"], row["scenario"]): row for row in summary["rows"]}
    assert set(rows) == {(p, s) for p in ("gevent", "baseline") for s in ("io", "db")}
    for row in rows.values():
        assert row["error"] is None, row
        assert row["users"] == 100
        assert row["requests"] > 0
        assert row["failures"] == 0
        assert 0 < row["efficiency"] < 1.5, row
        assert row["server_cpu"] > 0
        assert row["generator_cpu"] > 0
        assert row["memory_mib"] > 0
    assert 0 < rows["gevent", "db"]["peak_db_connections"] <= DEFAULT_BUDGET
    assert rows["baseline", "db"]["peak_db_connections"] == 1  # one sync worker
    assert rows["baseline", "io"]["bound_limit"] == "slots"
    # Wide headroom: 2 gevent workers against one sync worker, 100 users waiting 50 ms each.
    assert rows["gevent", "io"]["rps"] > 5 * rows["baseline", "io"]["rps"]
    machine = summary["machine"]
    assert machine["cpus"] == os.cpu_count()
    assert {"django", "gunicorn", "gevent", "locust"} <= set(machine["versions"])
    assert machine["database"].startswith("PostgreSQL ")


def test_the_effective_sizing_comes_from_gunicorn(quick_run):
    _, results = quick_run
    measurements = json.loads((results / "measurements.json").read_text())
    gevent = measurements["presets"]["gevent"]
    assert gevent["startup_line"].startswith("Preset gevent: ")
    assert gevent["sizing"]["worker_class"] == "gevent"
    assert gevent["sizing"]["worker_connections"] == 1000
    assert f"{gevent['sizing']['workers']} workers (CPUs)" in gevent["startup_line"]
    assert gevent["sizing"]["database_connections"] == DEFAULT_BUDGET
    baseline = measurements["presets"]["baseline"]
    assert baseline["startup_line"] is None
    assert baseline["sizing"]["workers"] == 1
    assert baseline["sizing"]["database_connections"] is None
    for preset in (gevent, baseline):
        assert set(preset["costs"]) == {"io", "db"}
        assert all(cost["cpu_s"] > 0 for cost in preset["costs"].values())


def test_the_results_folder_holds_the_report_and_every_raw_file(quick_run):
    result, results = quick_run
    for name in ("summary.json", "summary.md", "summary.png", "index.html", "measurements.json"):
        assert (results / name).is_file(), name
    assert (results / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for preset in ("gevent", "baseline"):
        assert "Booting worker" in (results / f"server-{preset}.log").read_text()
        for scenario in ("io", "db"):
            name = f"{preset}-{scenario}-100"
            for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", ".html"):
                assert (results / f"{name}{suffix}").is_file(), name + suffix
    assert results.parent.name == "loadtest-results"
    assert results.name != "latest"
    output = result.stdout
    assert output.index("Load test: every run") < output.index("Recommendation")
    assert f"Report: {results / 'index.html'}" in output.replace("\n", "")


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_page_renders_its_table_and_chart_in_a_browser_with_no_network(
    project, quick_run, tmp_path
):
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    _, results = quick_run
    page = (results / "index.html").as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        # The page must not need the network: let Chromium have none.
        "--proxy-server=127.0.0.1:9",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    )
    assert "<table>" in dom.stdout, dom.stderr
    assert dom.stdout.count("<tr") == 5  # the heading and four runs
    assert 'src="data:image/png;base64,' in dom.stdout
    screenshot = tmp_path / "page.png"
    subprocess.run(
        [browser, *flags, "--window-size=1400,3000", f"--screenshot={screenshot}", page],
        capture_output=True,
        timeout=120,
        check=True,
    )
    colours = chart_colours_in(project, screenshot)
    assert colours == 2, "the chart's preset lines are not on the page"


# Counts the pixels of matplotlib's first two colours (each preset's line in the chart) in a
# screenshot, with the Pillow that matplotlib brings into the project.
COUNT_CHART_COLOURS = """
import sys
from PIL import Image

counts = dict((colour, count) for count, colour in
              Image.open(sys.argv[1]).convert("RGB").getcolors(1 << 24))
print(sum(1 for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)) if counts.get(colour, 0) > 50))
"""


def chart_colours_in(project, screenshot):
    counted = run(project, project.bin("python"), "-c", COUNT_CHART_COLOURS, str(screenshot))
    assert counted.returncode == 0, counted.stderr
    return int(counted.stdout)


def test_locust_workers_run_in_its_own_distributed_mode(project, module_database):
    result = loadtest(
        project,
        *QUICK,
        "--presets",
        "sync",
        "--scenarios",
        "io",
        "--workers",
        "2",
        DATABASE_URL=module_database,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = latest(project)
    locust_log = (results / "sync-io-100.locust.log").read_text()
    assert "2 workers connected" in locust_log or "(2 total workers)" in locust_log, locust_log
    (row,) = json.loads((results / "summary.json").read_text())["rows"]
    assert row["error"] is None
    assert row["requests"] > 0
    assert row["generator_cpu"] > 0


def test_a_preset_that_cannot_start_gets_its_error_and_the_others_still_run(
    project, module_database
):
    result = loadtest(
        project,
        *QUICK,
        "--presets",
        "gevent,baseline",
        "--scenarios",
        "io",
        DATABASE_URL=module_database,
        # Only the presets keep the budget: the baseline (gunicorn alone) starts anyway.
        DATABASE_CONNECTION_BUDGET="1",
        WEB_CONCURRENCY="2",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {
        row["preset"]: row
        for row in json.loads((latest(project) / "summary.json").read_text())["rows"]
    }
    expected = (
        "DATABASE_CONNECTION_BUDGET=1 gives less than one connection to each of the 2 workers: "
        "raise it or lower WEB_CONCURRENCY"
    )
    assert rows["gevent"]["error"] == expected
    assert rows["baseline"]["error"] is None
    assert rows["baseline"]["requests"] > 0
    assert f"gevent: {expected}" in result.stdout.replace("\n", "")


def descendants(pid):
    """Every process below `pid`, from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None  # gone


def test_ctrl_c_stops_every_server_and_locust_process(project, module_database):
    process = subprocess.Popen(
        [project.bin("python"), "-m", "loadtest", "--presets", "gthread", "--scenarios", "io"],
        cwd=project.path,
        env=environment(project, DATABASE_URL=module_database),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        started = {}
        while time.monotonic() < deadline and process.poll() is None:
            started = {pid: command_line(pid) for pid in descendants(process.pid)}
            if any("locust" in (line or "") for line in started.values()):
                break
            time.sleep(0.5)
        assert any("gunicorn" in (line or "") for line in started.values()), started
        assert any("locust" in (line or "") for line in started.values()), started
        time.sleep(2)  # users running, the server under load
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, output
    assert "Interrupted: every server and Locust process it started is stopped" in output
    left = {pid: line for pid, line in started.items() if command_line(pid) == line}
    assert not left, f"still running: {left}"


LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Visitor(FastHttpUser):
    wait_time = constant(0.01)

    @task
    def readiness(self):
        self.client.get("/readyz")
"""


def test_without_demo_endpoints_it_runs_your_own_locust_file(
    installed_project, module_database, tmp_path
):
    project = installed_project(include_demo_endpoints=False)
    refused = loadtest(project, "--quick")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "loadtest: no scenario to run: this project has no demo endpoints, so pass your own "
        "Locust file with --locustfile PATH"
    )
    locustfile = tmp_path / "readiness.py"
    locustfile.write_text(LOCUSTFILE)
    result = loadtest(
        project,
        *QUICK,
        "--presets",
        "sync",
        "--locustfile",
        str(locustfile),
        DATABASE_URL=module_database,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = latest(project)
    measurements = json.loads((results / "measurements.json").read_text())
    cost = measurements["presets"]["sync"]["costs"]["readiness"]  # calibrated with one user
    assert cost["cpu_s"] > 0
    assert cost["cycle_s"] > cost["service_s"] > 0  # the think time is in the cycle only
    (row,) = json.loads((results / "summary.json").read_text())["rows"]
    assert row["scenario"] == "readiness"
    assert row["error"] is None
    assert row["requests"] > 0
    assert row["bound_rps"] > 0
