"""What the presets refuse or warn about before serving: DEBUG on the network, missing pieces."""

import logging
import secrets

import pytest
from django.conf import settings as django_settings

from config.gunicorn import production

GOOD_KEY = secrets.token_urlsafe(50)


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        ([("0.0.0.0", 8000)], True),
        ([("::", 8000)], True),
        ([("10.0.0.5", 8000)], True),
        ([("service.internal", 8000)], True),
        ([("127.0.0.1", 8000)], False),
        ([("::1", 8000)], False),
        ([("localhost", 8000)], False),
        (["/run/gunicorn.sock"], False),
        ([("127.0.0.1", 8000), ("0.0.0.0", 8001)], True),
    ],
)
def test_debug_is_refused_on_an_address_other_hosts_can_reach(settings, addresses, refused):
    settings.DEBUG = True
    refusal = production.debug_refusal(settings, addresses, allowed=False)
    assert (refusal is not None) == refused
    if refused:
        # What is seen, whatever the settings read it from, and the ways out that always work.
        assert refusal.startswith("settings.DEBUG is True and gunicorn listens on ")
        for way_out in (
            "turn DEBUG off in the settings",
            "--bind 127.0.0.1",
            "GUNICORN_ALLOW_DEBUG",
        ):
            assert way_out in refusal
        assert "\n" not in refusal


def test_debug_on_the_network_only_on_purpose(settings):
    settings.DEBUG = True
    assert production.debug_refusal(settings, [("0.0.0.0", 8000)], allowed=True) is None
    settings.DEBUG = False
    assert production.debug_refusal(settings, [("0.0.0.0", 8000)], allowed=False) is None


def test_debug_served_on_this_host_is_said_at_start_up():
    warning = production.debug_warning([("127.0.0.1", 8000), "unix:/run/gunicorn.sock"])
    assert warning.startswith("settings.DEBUG is True: Django's debug pages")
    assert "127.0.0.1:8000, unix:/run/gunicorn.sock" in warning
    assert "\n" not in warning


def warning_about(text, settings):
    return [line for line in production.warnings(settings) if text in line]


def test_a_missing_static_files_manifest_is_one_warning(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **django_settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings.SECRET_KEY = GOOD_KEY
    settings.ALLOWED_HOSTS = ["service.example.com"]  # whatever DJANGO_ALLOWED_HOSTS says
    (warning,) = production.warnings(settings)
    assert "collectstatic" in warning
    (tmp_path / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    settings.STORAGES = {**settings.STORAGES}  # a new storage object, reading the manifest
    assert production.warnings(settings) == []


@pytest.mark.parametrize(
    "key",
    ["short", "django-insecure-" + "x" * 60, "a" * 60, "ab" * 30],
)
def test_a_short_or_well_known_secret_key_is_a_warning(settings, key):
    settings.SECRET_KEY = key
    assert warning_about("DJANGO_SECRET_KEY", settings)


def test_any_host_is_a_warning(settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.SECRET_KEY = GOOD_KEY
    assert warning_about("DJANGO_ALLOWED_HOSTS", settings)
    settings.ALLOWED_HOSTS = ["service.example.com"]
    assert not warning_about("DJANGO_ALLOWED_HOSTS", settings)


def test_a_foreign_host_is_one_line_at_warning_not_a_traceback(client, settings, caplog):
    settings.ALLOWED_HOSTS = ["service.example.com"]
    with caplog.at_level(logging.INFO, logger="django.security.DisallowedHost"):
        response = client.get("/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    (record,) = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "evil.example" in record.getMessage()
