"""The database connection budget at any scale: simulated CPU budgets, 16 workers, PgBouncer.

Every preset plans its PostgreSQL connections within DATABASE_CONNECTION_BUDGET
(config/gunicorn/database/plan.py) on 1 to 64 CPUs. The rules are plain functions
of the CPU budget (config/gunicorn/sizing.py), the ones the presets call at start-up,
so the simulation runs them in the project's own virtualenv; real gunicorn and real
PostgreSQL then show that what is planned is what opens.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port
from test_gevent import PeakConnections, wrk
from test_presets import serve

pytestmark = pytest.mark.slow

DEFAULT_BUDGET = 40
PRESETS = ("sync", "gthread", "gevent", "asgi")

SIMULATION = """
import json
from config.gunicorn.database.plan import plan_database
from config.gunicorn.environment import read_environment
from config.gunicorn.sizing import MODELS, size

env = read_environment({})
plans = []
for cpus in range(1, 65):
    for model in MODELS:
        sizing = size(model, cpus, env)
        plan = plan_database(sizing, env.database_connection_budget)
        plans.append({"cpus": cpus, "model": model, "workers": sizing.workers,
                      "pool": plan.pool, "most": plan.most})
print(json.dumps(plans))
"""


@pytest.fixture(scope="module")
def project(installed_project):
    return installed_project()


def run_python(project, code, *args):
    result = subprocess.run(
        [project.bin("python"), "-c", code, *args],
        cwd=project.path,
        capture_output=True,
        text=True,
        timeout=60,
        env=project.environment(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_preset_plans_within_the_budget_on_1_to_64_cpus(project):
    plans = json.loads(run_python(project, SIMULATION))
    assert len(plans) == 64 * len(PRESETS)
    over = [plan for plan in plans if plan["most"] > DEFAULT_BUDGET]
    assert not over, over
    by_cpus = {(plan["cpus"], plan["model"]): plan for plan in plans}
    # Where the rules change: gthread pools from 5 CPUs on (6 workers x 8 threads = 48).
    assert by_cpus[4, "gthread"]["pool"] is None
    assert by_cpus[5, "gthread"]["pool"] == DEFAULT_BUDGET // 6
    assert by_cpus[16, "gthread"]["most"] == 32  # 16 workers (the cap) x a pool of 2
    assert by_cpus[64, "sync"]["workers"] == 16


def test_the_readme_shows_the_table_the_rules_give(project):
    table = run_python(project, "from config.gunicorn.sizing import table; print(table())")
    readme = (project.path / "README.md").read_text(encoding="utf-8")
    assert table.strip() in readme


def test_16_gthread_workers_keep_200_clients_within_the_budget(
    project, running_server, database_url, postgres_admin
):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    with (
        serve(
            running_server,
            project,
            [project.bin("python"), "-m", "config.gunicorn"],
            GUNICORN_PRESET="gthread",
            WEB_CONCURRENCY="16",
            DATABASE_URL=database_url,
            DJANGO_DEMO_ENDPOINTS="true",
        ) as server,
        PeakConnections(postgres_admin, database_url) as connections,
    ):
        summary, output = wrk(f"{server.url}/demo/db?ms=50", connections=200, seconds=10)
        line = server.startup_line()
    assert "16 workers (WEB_CONCURRENCY)" in line
    assert "database: a pool of 2 per worker, 32 at most; budget 40" in line, line
    assert summary["requests"] > 1000, output
    assert "non-2xx" not in summary, output
    assert "socket errors" not in summary, output
    assert 0 < connections.peak <= DEFAULT_BUDGET
    assert "too many clients" not in server.log


PGBOUNCER_POOL = 20


@contextmanager
def pgbouncer(pool_size):
    """Debian's PgBouncer in transaction mode on a free port, in front of the local PostgreSQL."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer)")
    port = free_port()
    # PgBouncer refuses to run as root: as postgres, it needs a folder it can read.
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o755)
    (folder / "users.txt").write_text('"postgres" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        "* = host=127.0.0.1 port=5432\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir =\nauth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 2000\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    process = subprocess.Popen(
        [binary, "-u", "postgres", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("preset", ["gevent", "gthread"])
def test_500_clients_through_pgbouncer_with_transaction_pooling(
    project, running_server, database_url, postgres_admin, preset
):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    name = database_url.rsplit("/", 1)[1]
    with pgbouncer(PGBOUNCER_POOL) as port:
        through_pgbouncer = f"postgresql://postgres@127.0.0.1:{port}/{name}"
        with (
            serve(
                running_server,
                project,
                [project.bin("python"), "-m", "config.gunicorn"],
                GUNICORN_PRESET=preset,
                DATABASE_URL=through_pgbouncer,
                DJANGO_DB_TRANSACTION_POOLING="true",
                DJANGO_DEMO_ENDPOINTS="true",
            ) as server,
            PeakConnections(postgres_admin, database_url) as server_connections,
        ):
            summary, output = wrk(f"{server.url}/demo/db?ms=50", connections=500, seconds=10)
    print(f"{preset} through PgBouncer: {summary['requests'] / 10:.0f} requests/s")
    assert summary["requests"] > 1000, output
    assert "non-2xx" not in summary, output
    assert "socket errors" not in summary, output
    # PostgreSQL sees PgBouncer's connections only, and no more than its pool.
    assert 0 < server_connections.peak <= PGBOUNCER_POOL
    assert "Traceback" not in server.log
