import logging
import socket
import time

import pytest
from django.db import connection

from {{ cookiecutter.project_slug }} import probes


def test_healthz_answers_without_touching_the_database(client):
    # No django_db mark: pytest-django fails the test if the probe queries the database.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_ignore_allowed_hosts_and_https_redirect(client, settings):
    settings.ALLOWED_HOSTS = ["service.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200


def test_probes_accept_only_safe_methods(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_readyz_is_ok_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def database_at(monkeypatch):
    """Point the default database at another address, for the probe only."""
    if connection.vendor != "postgresql":
        pytest.skip("needs a database server to take away: PostgreSQL, which devdb.py brings")

    def point(host, port):
        connection.close()
        monkeypatch.setitem(connection.settings_dict, "HOST", host)
        monkeypatch.setitem(connection.settings_dict, "PORT", port)

    yield point
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_when_the_database_is_down_and_tells_only_the_log_why(
    client, database_at, caplog
):
    database_at("127.0.0.1", 1)  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="{{ cookiecutter.project_slug }}.probes"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "database unavailable"}
    assert "127.0.0.1" not in response.content.decode()
    # The driver's reason (psycopg 3.1 gives no more; 3.2 and psycopg2 name the port too).
    assert "Connection refused" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_within_its_own_bound_when_the_database_never_answers(client, database_at):
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        database_at(*silent.getsockname())
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < probes.READY_TIMEOUT_S + 3  # not the pool's 10 s; wide for busy machines


def test_readyz_is_503_whatever_goes_wrong(client, monkeypatch):
    def broken():
        raise RuntimeError("not a database error")

    monkeypatch.setattr(probes, "database_answers", broken)
    assert client.get("/readyz").status_code == 503
