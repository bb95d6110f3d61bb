"""The system checks of database connections: the settings against what gunicorn plans."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.gunicorn.__main__ import DEFAULT_PRESET
from {{ cookiecutter.project_slug }} import checks
from {{ cookiecutter.project_slug }}.checks import Server, connection_warnings, pool_size

PROJECT_DIR = Path(__file__).resolve().parent.parent
W002 = "{{ cookiecutter.project_slug }}.W002"
W003 = "{{ cookiecutter.project_slug }}.W003"


def database(conn_max_age=0, pool=None):
    """A PostgreSQL database's settings, as Django fills them in."""
{%- if cookiecutter.database_driver == "psycopg" %}
    return {"CONN_MAX_AGE": conn_max_age, "OPTIONS": {"pool": pool} if pool else {}}
{%- else %}
    settings = {"CONN_MAX_AGE": conn_max_age, "OPTIONS": {}}
    if pool:
        settings["POOL"] = pool
    return settings
{%- endif %}


def ids(warnings):
    return [warning.id for warning in warnings]


def test_outside_gunicorn_only_the_preset_is_known():
    assert Server.from_environ({}) == Server(DEFAULT_PRESET)
    assert Server.from_environ({"GUNICORN_PRESET": "gevent"}) == Server("gevent")


def test_in_a_worker_the_facts_come_from_the_master():
    facts = {
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_WORKERS": "3",
        "GUNICORN_WORKER_CONCURRENCY": "8",
        "DATABASE_CONNECTION_BUDGET": "40",
    }
    assert Server.from_environ(facts) == Server("gthread", 3, 8, 40)
    no_limit = {**facts, "GUNICORN_WORKER_CLASS": "asgi", "GUNICORN_WORKER_CONCURRENCY": ""}
    assert Server.from_environ(no_limit) == Server("asgi", 3, None, 40)


def test_nothing_to_say_before_the_master_has_planned():
    # Outside gunicorn the settings carry no pool yet: the master sets it at start-up.
    assert connection_warnings({"default": database(60)}, Server("gevent")) == []


def test_nothing_to_say_without_postgresql():
    assert connection_warnings({}, Server("gevent", 2, 1000, 40)) == []


@pytest.mark.parametrize(
    ("server", "databases"),
    [
        (Server("sync", 5, 1, 40), {"default": database(60)}),
        (Server("gthread", 5, 8, 40), {"default": database(60)}),
        (Server("gevent", 2, 1000, 40), {"default": database(0, {"max_size": 20})}),
        (Server("asgi", 4, None, 40), {"default": database(0, {"max_size": 10})}),
    ],
    ids=["sync", "gthread at the budget", "gevent", "asgi"],
)
def test_the_presets_as_planned_fit_the_budget(server, databases):
    assert connection_warnings(databases, server) == []


def test_threads_beyond_the_budget():
    (warning,) = connection_warnings({"default": database(60)}, Server("gthread", 6, 8, 40))
    assert warning.id == W003
    assert warning.msg == (
        "Up to 48 PostgreSQL connections (6 workers x 8) exceed DATABASE_CONNECTION_BUDGET=40."
    )


def test_every_database_counts_against_the_budget():
    databases = {"default": database(60), "reports": database(60)}
    (warning,) = connection_warnings(databases, Server("gthread", 3, 8, 40))
    assert warning.msg.startswith("Up to 48 PostgreSQL connections (3 workers x 16) exceed ")


def test_persistent_connections_under_gevent_without_a_pool():
    warnings = connection_warnings({"default": database(60)}, Server("gevent", 2, 1000, 40))
    assert ids(warnings) == [W002, W003]
    assert "persistent connections (CONN_MAX_AGE=60) and no pool under gevent" in warnings[0].msg
    assert warnings[1].msg.startswith("Up to 2000 PostgreSQL connections (2 workers x 1000)")


def test_gevent_without_a_pool_exceeds_the_budget_even_without_persistence():
    warnings = connection_warnings({"default": database(0)}, Server("gevent", 2, 1000, 40))
    assert ids(warnings) == [W003]


def test_unlimited_persistence_is_persistent_too():
    warnings = connection_warnings({"default": database(None)}, Server("gevent", 2, 1000, 40))
    assert ids(warnings) == [W002, W003]


def test_asgi_without_a_pool_has_no_limit():
    (warning,) = connection_warnings({"default": database(0)}, Server("asgi", 2, None, 40))
    assert warning.id == W003
    assert warning.msg.startswith("No limit on PostgreSQL connections: asgi workers run any")


def test_a_pool_larger_than_the_plan():
    databases = {"default": database(0, {"max_size": 50})}
    assert ids(connection_warnings(databases, Server("gevent", 2, 1000, 40))) == [W003]


def test_pool_size():
    assert pool_size(database()) is None
    assert pool_size(database(0, {"max_size": 20, "timeout": 10})) == 20
{%- if cookiecutter.database_driver == "psycopg" %}
    assert pool_size(database(0, True)) == 4  # psycopg_pool's default
    assert pool_size(database(0, {"min_size": 6})) == 6  # max_size defaults to min_size
{%- endif %}


def test_the_check_is_registered_under_the_gunicorn_tag():
    from django.core.checks import registry

    assert checks.database_connections in registry.registry.get_checks()
    assert "gunicorn" in checks.database_connections.tags
{%- if cookiecutter.database_driver == "psycopg2" %}


class FakeMonkey:
    """gevent.monkey as a gevent worker sees it, without patching the test process."""

    @staticmethod
    def is_module_patched(name):
        return True


@pytest.fixture
def gevent_on_postgresql(monkeypatch):
    monkeypatch.setenv("GUNICORN_PRESET", "gevent")
    monkeypatch.delenv("GUNICORN_WORKERS", raising=False)
    monkeypatch.setattr(checks, "postgresql_databases", lambda: {"default": database()})


def test_psycopg2_with_psycogreen_installed(gevent_on_postgresql):
    assert checks.psycopg2_wait_callback() == []


def test_psycopg2_without_psycogreen(gevent_on_postgresql, monkeypatch):
    monkeypatch.setattr(checks, "find_spec", lambda name: None)
    (warning,) = checks.psycopg2_wait_callback()
    assert warning.id == "{{ cookiecutter.project_slug }}.W001"


def test_psycopg2_in_a_gevent_worker_without_a_wait_callback(gevent_on_postgresql, monkeypatch):
    from psycopg2 import extensions

    assert extensions.get_wait_callback() is None  # as in any process psycogreen left alone
    monkeypatch.setitem(sys.modules, "gevent.monkey", FakeMonkey)
    assert ids(checks.psycopg2_wait_callback()) == ["{{ cookiecutter.project_slug }}.W001"]


def test_psycopg2_check_is_for_gevent_only(gevent_on_postgresql, monkeypatch):
    monkeypatch.setattr(checks, "find_spec", lambda name: None)
    monkeypatch.setenv("GUNICORN_PRESET", "gthread")
    assert checks.psycopg2_wait_callback() == []
{%- endif %}


def test_manage_py_check_shows_the_warning():
    """The facts a gunicorn master exports, handed to `manage.py check` by hand."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "GUNICORN_", "WEB_CONCURRENCY"))
    }
    env.update(
        DJANGO_SECRET_KEY="check-only",
        # The checks read settings only: nothing connects, nothing needs to listen there.
        DATABASE_URL="postgres://nobody@127.0.0.1:1/nothing",
        GUNICORN_WORKER_CLASS="gthread",
        GUNICORN_WORKERS="6",
        GUNICORN_WORKER_CONCURRENCY="8",
        DATABASE_CONNECTION_BUDGET="40",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"({W003}) Up to 48 PostgreSQL connections (6 workers x 8) exceed "
        "DATABASE_CONNECTION_BUDGET=40."
    ) in result.stderr
