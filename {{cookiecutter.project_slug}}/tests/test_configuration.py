"""Settings from the environment: one readable line for a bad value; the database's."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent


def manage(*args, **env_overrides):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL"))
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_DEBUG": "false"}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG: Not a valid boolean."),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL: Not a valid database URL."),
        ({"DJANGO_CONN_MAX_AGE": "forever"}, "DJANGO_CONN_MAX_AGE: Not a valid integer."),
        ({"DJANGO_DB_POOL_SIZE": "-1"}, "DJANGO_DB_POOL_SIZE='-1' is out of range: use 1"),
        (
            {"DJANGO_DB_POOL_TIMEOUT": "0"},
            "DJANGO_DB_POOL_TIMEOUT='0' is not a number above 0: use e.g. 10",
        ),
        (
            {"DJANGO_DB_TRANSACTION_POOLING": "maybe"},
            "DJANGO_DB_TRANSACTION_POOLING='maybe' is not true or false",
        ),
        (
            {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432"},
            "the PostgreSQL database has no name (DATABASE_URL)",
        ),
    ],
)
def test_bad_configuration_stops_with_one_line(overrides, expected):
    result = manage("check", **{**PRODUCTION, **overrides})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: ")
    assert expected in lines[0]


def test_production_settings_pass_the_deployment_checklist():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def database_settings(**env_overrides):
    """DATABASES["default"] as settings.py builds it from `env_overrides`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL"))
    }
    env.update(PRODUCTION, **env_overrides)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from config import settings; "
            "print(json.dumps(settings.DATABASES['default'], default=str))",
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


POSTGRESQL = "postgres://service@db.example:5432/service"


def test_persistent_connections_without_a_pool():
    database = database_settings(DATABASE_URL=POSTGRESQL)
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (60, True)
{%- if cookiecutter.database_driver == "psycopg" %}
    assert "pool" not in database["OPTIONS"]
{%- else %}
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert "POOL" not in database
{%- endif %}


def test_a_pool_when_the_gunicorn_master_sets_its_size():
    database = database_settings(
        DATABASE_URL=POSTGRESQL, DJANGO_DB_POOL_SIZE="20", DJANGO_CONN_MAX_AGE="300"
    )
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (0, False)
    assert database["ENGINE"] == "config.gunicorn.database.pooled"
    assert database["POOL"] == {"max_size": 20, "timeout": 10.0}
    assert "pool" not in database["OPTIONS"]


def test_transaction_pooling_keeps_nothing_beyond_a_transaction():
    database = database_settings(
        DATABASE_URL=POSTGRESQL, DJANGO_DB_POOL_SIZE="20", DJANGO_DB_TRANSACTION_POOLING="true"
    )
    assert database["DISABLE_SERVER_SIDE_CURSORS"] is True
{%- if cookiecutter.database_driver == "psycopg" %}
    assert database["OPTIONS"]["prepare_threshold"] is None
{%- endif %}
    assert database["CONN_MAX_AGE"] == 0


def test_no_pool_on_sqlite_but_no_persistent_connections_either():
    database = database_settings(DATABASE_URL="sqlite:///unused.sqlite3", DJANGO_DB_POOL_SIZE="20")
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["CONN_MAX_AGE"] == 0
    assert "pool" not in database.get("OPTIONS", {})
