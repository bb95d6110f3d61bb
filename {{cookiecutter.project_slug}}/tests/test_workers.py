"""The presets' worker classes: which model each is, and the body limit they share."""

import pytest
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
