"""The presets' database plan, and the check of the settings against it, as plain functions."""

import pytest

from config.gunicorn.database.plan import BadPlan, plan_database
from config.gunicorn.database.settings import POOL_ENGINE
from config.gunicorn.database.verify import database_problems
from config.gunicorn.environment import read_environment
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
