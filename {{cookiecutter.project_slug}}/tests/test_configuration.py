"""Start-up with bad configuration: one readable line, no traceback."""

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
