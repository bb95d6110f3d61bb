import pytest
from django.db import connection


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


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_with_a_reason_when_the_database_is_down(client, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database server to take away: set DATABASE_URL to PostgreSQL")
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", 1)  # nothing listens there
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("database: ")
