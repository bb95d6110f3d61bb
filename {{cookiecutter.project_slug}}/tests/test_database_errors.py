"""Which database errors are a 503 and which a 500, on real PostgreSQL, with this driver.

A 503 with Retry-After, logged as one warning, only for a database that cannot be
used now: nothing listening, the pool's wait run out. A deadlock, a serialization
failure, a statement timeout are this request's errors: a 500, an unhandled
exception that reaches error reporting (got_request_exception, which Sentry's
Django integration listens to) and Django's ERROR line with its traceback.
"""

import logging
from functools import partial

import pytest
from django.core.signals import got_request_exception
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import path

from config.gunicorn.database.pooled.base import ConnectionPool

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db(transaction=True)]


def raise_sqlstate(condition):
    """PostgreSQL's own error for `condition`, as a query that hits it would get it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN RAISE EXCEPTION '{condition}' USING ERRCODE = '{condition}'; END $$"
        )


def statement_timeout():
    """A query that runs past its statement_timeout: PostgreSQL cancels it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 50")
        cursor.execute("SELECT pg_sleep(2)")


def pool_exhausted():
    """The kit's pool with its one connection lent: the next request waits it out."""
    pool = ConnectionPool(max_size=1, timeout=0.05)
    pool.getconn(object)  # lent, never given back
    with connection.wrap_database_errors:  # as Django wraps its connect()
        pool.getconn(object)


FAILURES = {
    "deadlock": partial(raise_sqlstate, "deadlock_detected"),
    "serialization": partial(raise_sqlstate, "serialization_failure"),
    "lock-timeout": partial(raise_sqlstate, "lock_not_available"),
    "statement-timeout": statement_timeout,
    "pool-exhausted": pool_exhausted,
    "unreachable": lambda: connection.ensure_connection(),
}


def fail(request, failure):
    FAILURES[failure]()
    return HttpResponse("not reached")


urlpatterns = [path("fail/<str:failure>", fail)]


@pytest.fixture(autouse=True)
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's errors: PostgreSQL, which devdb.py brings")


@pytest.fixture
def reported():
    """The requests whose exception reached error reporting (got_request_exception)."""
    requests = []

    def receive(sender, request=None, **kwargs):
        requests.append(request.path)

    got_request_exception.connect(receive)
    yield requests
    got_request_exception.disconnect(receive)


@pytest.fixture
def unreachable(monkeypatch):
    """The default database moved to a port where nothing listens, for one request."""
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", 1)
    yield
    connection.close()


@pytest.mark.parametrize(
    "failure", ["deadlock", "serialization", "lock-timeout", "statement-timeout"]
)
def test_an_error_of_the_request_is_a_500_that_reaches_error_reporting(failure, reported, caplog):
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.WARNING):
        response = client.get(f"/fail/{failure}", secure=True)
    assert response.status_code == 500
    assert "Retry-After" not in response
    assert reported == [f"/fail/{failure}"]
    (error,) = [record for record in caplog.records if record.name == "django.request"]
    assert error.levelno == logging.ERROR
    assert error.exc_info is not None  # the traceback, for whoever fixes it
    assert not [r for r in caplog.records if "database unavailable" in r.getMessage()]


@pytest.mark.parametrize("failure", ["pool-exhausted", "unreachable"])
def test_a_database_that_cannot_be_used_now_is_a_503_and_one_warning(
    failure, reported, caplog, request
):
    if failure == "unreachable":
        request.getfixturevalue("unreachable")
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.WARNING):
        response = client.get(f"/fail/{failure}", secure=True)
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json() == {"status": "unavailable", "reason": "database unavailable"}
    assert reported == []
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(f"database unavailable for /fail/{failure}: database: ")
    assert warning.exc_info is None
