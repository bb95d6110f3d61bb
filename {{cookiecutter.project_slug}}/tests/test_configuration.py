"""Settings from the environment: one readable line for a bad value; the database's."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent


def clean_environment():
    """The caller's environment without anything the settings or the presets read."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "GUNICORN_", "WEB_CONCURRENCY", "PORT"))
    }


def manage(*args, **env_overrides):
    env = clean_environment()
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
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe': Not a valid boolean."),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL='not a url': Not a valid database URL."),
        (
            {"DJANGO_CONN_MAX_AGE": "forever"},
            "DJANGO_CONN_MAX_AGE='forever': Not a valid integer.",
        ),
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
            {"DJANGO_DB_STATEMENT_TIMEOUT": "-1"},
            "DJANGO_DB_STATEMENT_TIMEOUT='-1' is not 0 or more",
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
    env = clean_environment()
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
    assert database["POOL"] == {
        "ENGINE": "django.db.backends.postgresql",
        "max_size": 20,
        "timeout": 10.0,
    }
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


def test_a_statement_timeout_when_set_and_none_otherwise():
    """The presets set 20 s (startup.py); manage.py, a shell, a migration get none."""
    assert "options" not in database_settings(DATABASE_URL=POSTGRESQL)["OPTIONS"]
    timed = database_settings(DATABASE_URL=POSTGRESQL, DJANGO_DB_STATEMENT_TIMEOUT="2.5")
    assert timed["OPTIONS"]["options"] == "-c statement_timeout=2500"
    off = database_settings(DATABASE_URL=POSTGRESQL, DJANGO_DB_STATEMENT_TIMEOUT="0")
    assert "options" not in off["OPTIONS"]
    # PgBouncer passes no connection option on: the role's setting is the way there.
    pooler = database_settings(
        DATABASE_URL=POSTGRESQL,
        DJANGO_DB_STATEMENT_TIMEOUT="5",
        DJANGO_DB_TRANSACTION_POOLING="true",
    )
    assert "options" not in pooler["OPTIONS"]


SPELLINGS = ["t", "T", "true", "True", "yes", "Y", "on", "1", "f", "false", "no", "off", "0"]
SPELLINGS += ["maybe", "TrUe", "2"]  # refused by both


def test_booleans_are_read_alike_by_the_settings_and_the_presets():
    """DJANGO_DEBUG (environs, in the settings) and GUNICORN_ALLOW_DEBUG (the kit)."""
    from config.gunicorn.environment import BadSetting, boolean

    script = (
        "import importlib, json, os, sys\n"
        "from django.core.exceptions import ImproperlyConfigured\n"
        "read = {}\n"
        "for spelling in json.loads(sys.argv[1]):\n"
        "    os.environ['DJANGO_DEBUG'] = spelling\n"
        "    try:\n"
        "        import config.settings as settings\n"
        "        read[spelling] = importlib.reload(settings).DEBUG\n"
        "    except ImproperlyConfigured:\n"
        "        read[spelling] = None\n"
        "print(json.dumps(read))\n"
    )
    env = clean_environment()
    env.update(PRODUCTION, DJANGO_READ_DOT_ENV_FILE="false")
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(SPELLINGS)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    settings_read = json.loads(result.stdout)

    def kit_read(spelling):
        try:
            return boolean({"GUNICORN_ALLOW_DEBUG": spelling}, "GUNICORN_ALLOW_DEBUG")
        except BadSetting:
            return None

    assert settings_read == {spelling: kit_read(spelling) for spelling in SPELLINGS}
    assert settings_read["t"] is True and settings_read["off"] is False
    assert settings_read["maybe"] is None


def dot_env_read(**env_overrides):
    """Whether the settings read a .env file, given `env_overrides`."""
    script = (
        "import environs\n"
        "calls = []\n"
        "environs.Env.read_env = lambda self, *args, **kwargs: calls.append(args)\n"
        "import config.settings\n"
        "print(bool(calls))\n"
    )
    env = clean_environment()
    env.update(PRODUCTION, **env_overrides)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


def test_the_image_never_reads_a_dot_env_file():
    """The Dockerfile sets DJANGO_READ_DOT_ENV_FILE=false; development reads .env."""
    assert dot_env_read()
    assert not dot_env_read(DJANGO_READ_DOT_ENV_FILE="false")
{%- if cookiecutter.use_docker %}
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert "DJANGO_READ_DOT_ENV_FILE=false" in dockerfile
{%- endif %}
