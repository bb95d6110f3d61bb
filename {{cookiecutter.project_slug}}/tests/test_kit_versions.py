"""The versions the kit checks before a preset starts, and the health check's path."""

import http.server
import threading
from importlib import metadata

import pytest

from config.gunicorn import healthcheck, versions


def installed(monkeypatch, **found):
    """Pretend these distributions are installed at these versions (None: not installed)."""
    real = metadata.version

    def version(name):
        key = name.replace("-", "_")
        if key in found:
            if found[key] is None:
                raise metadata.PackageNotFoundError(name)
            return found[key]
        return real(name)

    monkeypatch.setattr(versions.metadata, "version", version)


@pytest.mark.parametrize("model", ["sync", "gthread", "gevent", "asgi"])
def test_what_is_installed_here_passes(model):
    assert versions.problems(model) == []


def test_an_older_gunicorn_is_one_line_naming_both_versions_and_the_pip_line(monkeypatch):
    installed(monkeypatch, gunicorn="22.0.0")
    (problem,) = versions.problems("gthread")
    assert problem.startswith("gunicorn 22.0.0 is installed and the kit needs 27.0.1 or later")
    assert "pip install 'gunicorn[gevent]>=27.0.1,<28'" in problem
    with pytest.raises(versions.UnsupportedVersion, match=r"^gunicorn 22\.0\.0 is installed"):
        versions.require("asgi")


def test_each_preset_checks_what_it_runs_on(monkeypatch):
    installed(monkeypatch, gevent="25.9.1", uvloop=None, psycopg="3.1.13")
    assert versions.problems("sync") == []
    gevent = versions.problems("gevent")
    assert gevent[0].startswith("gevent 25.9.1 is installed and the kit needs 26.9 or later")
    assert gevent[1].startswith("psycopg 3.1.13 is installed and the kit needs 3.1.14 or later")
    (asgi,) = versions.problems("asgi")
    assert asgi.startswith("uvloop is not installed (the asgi preset's event loop)")


def test_django_older_than_5_2_8_is_refused(monkeypatch):
    installed(monkeypatch, django="5.1.15")
    (problem,) = versions.problems("sync")
    assert problem.startswith("django 5.1.15 is installed and the kit needs 5.2.8 or later")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("27.0.1", (27, 0, 1)), ("2.9.10 (dt dec pq3 ext lo64)", (2, 9, 10)), ("26.9", (26, 9))],
)
def test_versions_are_compared_as_numbers(text, parsed):
    assert versions.parse(text) == parsed


@pytest.fixture
def service(monkeypatch):
    """A server on a free port of 127.0.0.1 that answers 200 on /health/ only; PORT set."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health/" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    monkeypatch.setenv("PORT", str(server.server_port))
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def test_the_health_check_asks_the_path_it_is_given(service):
    healthcheck.main(["/health/"])  # returns: healthy
    with pytest.raises(SystemExit) as unhealthy:
        healthcheck.main(["/healthz"])  # which this service does not have
    assert str(unhealthy.value).startswith(
        f"unhealthy: http://127.0.0.1:{service.server_port}/healthz: HTTP Error 404"
    )
    with pytest.raises(SystemExit, match=r"^usage: python -m config\.gunicorn\.healthcheck"):
        healthcheck.main(["health"])
