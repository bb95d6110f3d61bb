"""The presets' database plan, and the check of the settings against it, as plain functions."""

import pytest

from config.gunicorn.database.middleware import DatabaseUnavailableMiddleware
from config.gunicorn.database.plan import BadPlan, plan_database
from config.gunicorn.database.settings import POOL_ENGINE, pooled
from config.gunicorn.database.verify import MIDDLEWARE, database_problems, middleware_problem
from config.gunicorn.environment import BadSetting, check_options, read_environment
from config.gunicorn.sizing import MODELS, Sizing, size

BUDGET = 40
POSTGRESQL = "django.db.backends.postgresql"


@pytest.mark.parametrize("cpus", range(1, 65))
@pytest.mark.parametrize("model", MODELS)
def test_every_preset_plans_within_the_budget(model, cpus):
    plan = plan_database(size(model, cpus, read_environment({})), BUDGET)
    assert plan.most <= BUDGET


def test_gthread_keeps_a_connection_per_thread_while_it_fits_then_pools():
    fits = plan_database(Sizing("gthread", 5, "", threads=8, worker_connections=8), BUDGET)
    assert (fits.pool, fits.most) == (None, 40)
    beyond = plan_database(Sizing("gthread", 16, "", threads=8, worker_connections=8), BUDGET)
    assert (beyond.pool, beyond.most) == (2, 32)
    assert beyond.describe() == "a pool of 2 per worker, 32 at most"


def test_sync_workers_beyond_the_budget_are_refused():
    with pytest.raises(BadPlan, match=r"^41 sync workers need 41 PostgreSQL connections"):
        plan_database(Sizing("sync", 41, ""), BUDGET)


def test_a_budget_too_small_to_give_each_worker_a_connection_is_refused():
    with pytest.raises(BadPlan, match=r"gives less than one connection to each of the 3"):
        plan_database(Sizing("gevent", 3, "", worker_connections=1000), 2)


def test_the_plan_reaches_the_settings_through_the_environment():
    plan = plan_database(Sizing("asgi", 2, ""), BUDGET)
    assert plan.environ() == {"DATABASE_CONNECTION_BUDGET": "40", "DJANGO_DB_POOL_SIZE": "20"}
    persistent = plan_database(Sizing("sync", 5, ""), BUDGET)
    assert persistent.environ()["DJANGO_DB_POOL_SIZE"] == ""


GEVENT = plan_database(Sizing("gevent", 2, "", worker_connections=1000), BUDGET)


DJANGOS_POOL = {"ENGINE": POSTGRESQL, "OPTIONS": {"pool": {"max_size": 20}}}
# What is installed: psycopg 3 and psycopg_pool (Django's pool needs both); psycopg2.
PSYCOPG_WITH_POOL = {"psycopg3": True, "psycopg_pool": True}
PSYCOPG2 = {"psycopg3": False, "psycopg_pool": False}


@pytest.mark.parametrize(
    ("database", "installed", "problem"),
    [
        (
            {"ENGINE": POSTGRESQL, "CONN_MAX_AGE": 500},
            PSYCOPG_WITH_POOL,
            "has no pool (CONN_MAX_AGE=500)",
        ),
        (
            {"ENGINE": POSTGRESQL, "OPTIONS": {"pool": {"max_size": 5}}},
            PSYCOPG_WITH_POOL,
            "has a pool of 5 per worker where the gevent preset plans 20",
        ),
        (
            {**DJANGOS_POOL, "CONN_MAX_AGE": 60},
            PSYCOPG_WITH_POOL,
            "keeps connections (CONN_MAX_AGE=60) with a pool",
        ),
        (
            DJANGOS_POOL,
            PSYCOPG2,
            "Django's pool (OPTIONS['pool']) needs psycopg 3, and this is psycopg2",
        ),
        (
            DJANGOS_POOL,
            {"psycopg3": True, "psycopg_pool": False},
            "Django's pool (OPTIONS['pool']) needs psycopg_pool, which is not installed",
        ),
    ],
    ids=["no pool", "another size", "persistent", "psycopg2", "no psycopg_pool"],
)
def test_settings_that_do_not_do_what_the_plan_says_are_named(database, installed, problem):
    (found,) = database_problems({"default": database}, GEVENT, **installed)
    assert found.startswith("Database 'default' ") or found.startswith("Database 'default': ")
    assert problem in found
    assert "build the entry with pooled() from config/gunicorn/database/settings.py" in found


@pytest.mark.parametrize(
    "database",
    [
        {**DJANGOS_POOL, "CONN_MAX_AGE": 0},
        {"ENGINE": POOL_ENGINE, "CONN_MAX_AGE": 0, "POOL": {"max_size": 20}},
        {"ENGINE": "django.db.backends.sqlite3", "CONN_MAX_AGE": 60},
    ],
    ids=["Django's pool", "the kit's pool", "not PostgreSQL"],
)
def test_settings_as_planned_pass(database):
    assert database_problems({"default": database}, GEVENT, **PSYCOPG_WITH_POOL) == []


POSTGIS = "django.contrib.gis.db.backends.postgis"


def test_an_engine_built_on_postgresql_is_pooled_and_kept():
    """PostGIS's engine (or one that wraps PostgreSQL's for metrics) keeps what it does."""
    environ = {"DJANGO_DB_POOL_SIZE": "20"}
    database = pooled({"ENGINE": POSTGIS, "NAME": "maps", "CONN_MAX_AGE": 500}, environ)
    assert database["ENGINE"] == POOL_ENGINE
    assert database["POOL"] == {"ENGINE": POSTGIS, "max_size": 20, "timeout": 10.0}
    assert database["CONN_MAX_AGE"] == 0
    assert database_problems({"default": database}, GEVENT, **PSYCOPG_WITH_POOL) == []
    # Unpooled, it is a PostgreSQL database without a pool, not "not PostgreSQL".
    (problem,) = database_problems(
        {"default": {"ENGINE": POSTGIS, "CONN_MAX_AGE": 500}}, GEVENT, **PSYCOPG_WITH_POOL
    )
    assert "has no pool (CONN_MAX_AGE=500)" in problem


def test_the_503_middleware_is_required_where_a_pool_is_planned():
    databases = {"default": {"ENGINE": POSTGRESQL}}
    refused = middleware_problem([], databases, GEVENT)
    assert refused.refused
    assert str(refused).startswith(f"MIDDLEWARE has no {MIDDLEWARE}: the gevent preset plans")
    assert f'MIDDLEWARE.insert(0, "{MIDDLEWARE}")' in str(refused)
    persistent = plan_database(Sizing("sync", 5, ""), BUDGET)
    warned = middleware_problem([], databases, persistent)
    assert not warned.refused
    assert "answers 500, not 503" in str(warned)
    assert middleware_problem([MIDDLEWARE], databases, GEVENT) is None
    assert middleware_problem([f"{__name__}.OwnUnavailable"], databases, GEVENT) is None
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3"}}
    assert middleware_problem([], sqlite, GEVENT) is None


class OwnUnavailable(DatabaseUnavailableMiddleware):
    """A project's own 503 middleware, built on the kit's."""


class GunicornSettings:
    """What check_options() reads of gunicorn's Config: the sized settings."""

    def __init__(self, workers=2, threads=8, worker_connections=1000, timeout=30):
        self.workers, self.threads = workers, threads
        self.worker_connections, self.timeout = worker_connections, timeout


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (
            model,
            {"workers": 0},
            "gunicorn's --workers 0 (command line or GUNICORN_CMD_ARGS) "
            "is out of range: use 1 to 16 (GUNICORN_MAX_WORKERS)",
        )
        for model in MODELS
    ]
    + [
        (
            "gthread",
            {"threads": 0},
            "--threads 0 (command line or GUNICORN_CMD_ARGS) is out "
            "of range: use 1 to 64 (as GUNICORN_THREADS)",
        ),
        ("gevent", {"worker_connections": 0}, "--worker-connections 0"),
        (
            "sync",
            {"timeout": 0},
            "--timeout 0 (command line or GUNICORN_CMD_ARGS) is out of "
            "range: use 1 to 3600 (as GUNICORN_TIMEOUT)",
        ),
        ("asgi", {"workers": 17}, "--workers 17"),
    ],
)
def test_gunicorns_own_options_go_through_the_same_ranges(model, options, message):
    with pytest.raises(BadSetting) as raised:
        check_options(GunicornSettings(**options), model, max_workers=16)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_options_a_preset_does_not_use_are_not_checked():
    check_options(GunicornSettings(threads=0, worker_connections=0), "sync", max_workers=16)
    check_options(GunicornSettings(threads=0), "gevent", max_workers=16)
