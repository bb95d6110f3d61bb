"""The presets' worker classes: which model each is, and the body limits they share."""

import socket
import time

import pytest
from gunicorn.config import Config
from gunicorn.http import RequestParser
from gunicorn.workers import SUPPORTED_WORKERS

from config.gunicorn import workers
from config.gunicorn.workers import limits


@pytest.mark.parametrize("model", ["sync", "gthread", "gevent", "asgi"])
def test_each_preset_class_and_gunicorns_own_name_the_same_model(model):
    assert workers.model_of(workers.CLASSES[model]) == model
    assert workers.model_of(model) == model
    assert workers.model_of(SUPPORTED_WORKERS[model]) == model


def test_an_unknown_worker_class_is_its_own_name():
    assert workers.model_of("mypackage.MyWorker") == "mypackage.MyWorker"


def test_the_wsgi_application_never_sees_a_body_over_the_limit():
    calls = []

    def application(environ, start_response):
        calls.append(environ)
        start_response("200 OK", [])
        return [b"ok"]

    guarded = limits.refuse_large_bodies(application)
    statuses = []

    def start_response(status, headers):
        statuses.append(status)

    body = guarded({"CONTENT_LENGTH": str(limits.MAX_REQUEST_BODY + 1)}, start_response)
    assert statuses == ["413 Content Too Large"]
    assert b"GUNICORN_MAX_REQUEST_BODY" in b"".join(body)
    assert calls == []
    assert guarded({"CONTENT_LENGTH": str(limits.MAX_REQUEST_BODY)}, start_response) == [b"ok"]
    assert guarded({}, start_response) == [b"ok"]
    assert len(calls) == 2


@pytest.fixture
def connection():
    """A socket pair: gunicorn's request parser reads one end, the test writes the other."""
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def parsed(server, client, head, body=b""):
    client.sendall(head + body)
    return next(RequestParser(Config(), server, ("127.0.0.1", 0)))


def post(length):
    return f"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def test_the_body_an_application_left_unread_is_read_to_its_end(connection):
    server, client = connection
    request = parsed(server, client, post(3 * limits.READ_SIZE), b"x" * 3 * limits.READ_SIZE)
    assert limits.read_unread_body(request, server) is True
    assert server.gettimeout() is None  # blocking again, as the worker had it
    client.sendall(b"next")
    assert server.recv(4) == b"next"  # nothing of the body was left before it


def test_a_client_that_stops_sending_its_body_is_given_up_on(connection, monkeypatch):
    monkeypatch.setattr(limits, "UNREAD_BODY_TIMEOUT", 0.2)
    server, client = connection
    request = parsed(server, client, post(1000), b"x" * 10)
    started = time.monotonic()
    assert limits.read_unread_body(request, server) is False
    assert time.monotonic() - started < 5


def test_a_body_refused_as_too_large_is_never_read(connection):
    server, client = connection
    request = parsed(server, client, post(limits.MAX_REQUEST_BODY + 1))
    client.sendall(b"x" * 10)
    assert limits.read_unread_body(request, server) is False
    server.setblocking(False)
    assert server.recv(100) == b"x" * 10  # still there, for the close to drop
