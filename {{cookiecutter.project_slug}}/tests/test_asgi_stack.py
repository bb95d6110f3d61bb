"""Under ASGI, the kit's middlewares run in the event loop: Django adapts none of them.

Django runs a sync-only middleware (or a sync hook of one) in a thread under ASGI,
and the rest of the chain back in the loop: a hop each way on every request. Django
logs each adaptation at DEBUG, which is what the first test reads.
"""

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.urls import path

from config.gunicorn.database.middleware import DatabaseUnavailableMiddleware
from config.gunicorn.observability import routes
from config.gunicorn.observability.routes import RouteMiddleware
from config.gunicorn.staticfiles import StaticFilesMiddleware
from {{ cookiecutter.project_slug }}.probes import ProbeMiddleware


def adaptations(caplog):
    """Django's DEBUG lines for each sync middleware it adapted as it built the async chain."""
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler().load_middleware(is_async=True)
    return [r.getMessage() for r in caplog.records if "handler adapted for" in r.getMessage()]


def test_the_shipped_middleware_chain_runs_in_the_event_loop_under_asgi(settings, caplog):
    settings.DEBUG = True  # Django logs adaptations only then
    assert adaptations(caplog) == []
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.SyncOnly"]
    assert adaptations(caplog), "a sync-only middleware went unseen"


class SyncOnly:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


async def async_get_response(request):
    return HttpResponse()


@pytest.mark.parametrize(
    "middleware",
    [RouteMiddleware, ProbeMiddleware, DatabaseUnavailableMiddleware, StaticFilesMiddleware],
)
def test_the_kits_middlewares_and_their_view_hooks_are_async_under_asgi(middleware):
    instance = middleware(async_get_response)
    assert iscoroutinefunction(instance)
    assert iscoroutinefunction(getattr(instance, "process_view", async_get_response))


def get(async_client, path, **extra):
    return async_to_sync(async_client.get)(path, **extra)


def test_probes_answer_under_asgi(async_client):
    response = get(async_client, "/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.asgi_request.scope[routes.KEY] == "healthz"
    assert async_to_sync(async_client.post)("/healthz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_readyz_queries_the_database_under_asgi(async_client):
    response = get(async_client, "/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def waits(request):
    await asyncio.sleep(0.001)
    return HttpResponse("waited")


urlpatterns = [path("waits/", waits, name="waits")]


def test_an_async_view_is_named_by_its_route_under_asgi(async_client, settings):
    settings.ROOT_URLCONF = __name__
    response = get(async_client, "/waits/")
    assert response.status_code == 200 and response.content == b"waited"
    assert response.asgi_request.scope[routes.KEY] == "waits"


def test_static_files_are_served_under_asgi_and_the_rest_passes_by(
    async_client, settings, tmp_path
):
    (tmp_path / "robots.txt").write_text("User-agent: *\n")
    settings.WHITENOISE_ROOT = tmp_path  # read as the middleware loads: on the first request
    response = get(async_client, "/robots.txt")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"User-agent: *\n"
    assert get(async_client, "/nowhere").status_code == 404
