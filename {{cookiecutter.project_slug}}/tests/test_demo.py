import asyncio

import pytest


@pytest.fixture(autouse=True)
def demo_endpoints_on(settings):
    settings.DEMO_ENDPOINTS = True


def test_io_waits_the_requested_time(client):
    response = client.get("/demo/io", {"ms": 20})
    assert response.status_code == 200
    body = response.json()
    assert body["workload"] == "io"
    assert body["ms"] == 20
    assert body["elapsed_ms"] >= 20


@pytest.mark.django_db
def test_db_waits_inside_the_database(client):
    response = client.get("/demo/db", {"ms": 20})
    assert response.status_code == 200
    body = response.json()
    assert body["workload"] == "db"
    assert body["elapsed_ms"] >= 20


def test_io_async_is_an_async_view_that_waits_the_requested_time(client):
    from {{ cookiecutter.project_slug }}.demo import views

    assert asyncio.iscoroutinefunction(views.io_async)
    response = client.get("/demo/io-async", {"ms": 20})
    assert response.status_code == 200
    body = response.json()
    assert (body["workload"], body["ms"]) == ("io-async", 20)
    assert body["elapsed_ms"] >= 20


@pytest.mark.django_db(transaction=True)
def test_upstream_calls_the_upstream_for_real_then_computes(client, live_server, settings):
    settings.DEMO_UPSTREAM_URL = live_server.url  # this very project, on a real socket
    response = client.get("/demo/upstream", {"ms": 30})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["workload"] == "upstream"
    assert body["upstream_ms"] >= 30  # what the upstream's /demo/io said it waited
    assert body["elapsed_ms"] >= body["upstream_ms"]
    assert body["primes"] == 367  # primes below 2,500: the work done on the answer


def test_upstream_reuses_its_connections(client, live_server, settings):
    settings.DEMO_UPSTREAM_URL = live_server.url
    from {{ cookiecutter.project_slug }}.demo.views import upstream_pool

    for _ in range(3):
        assert client.get("/demo/upstream", {"ms": 0}).status_code == 200
    pool = upstream_pool().connection_from_url(live_server.url)
    assert pool.num_connections == 1  # one connection, kept alive and reused


def test_upstream_without_an_upstream_is_a_503_that_says_why(client, settings):
    settings.DEMO_UPSTREAM_URL = ""
    response = client.get("/demo/upstream")
    assert response.status_code == 503
    assert response.json()["error"] == "no upstream to call: set DJANGO_DEMO_UPSTREAM_URL"


def test_an_upstream_that_does_not_answer_is_a_503(client, settings):
    settings.DEMO_UPSTREAM_URL = "http://127.0.0.1:9"  # discard: nothing listens there
    response = client.get("/demo/upstream")
    assert response.status_code == 503
    assert response.json()["error"].startswith("the upstream did not answer: ")


def test_cpu_counts_primes(client):
    response = client.get("/demo/cpu", {"n": 100})
    assert response.status_code == 200
    assert response.json()["primes"] == 25


def test_cpu_default_is_a_few_milliseconds_of_work(client):
    response = client.get("/demo/cpu")
    assert response.status_code == 200
    assert response.json()["primes"] == 1547  # primes below 13,000


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/demo/io", {"ms": "abc"}),
        ("/demo/io", {"ms": "-1"}),
        ("/demo/io", {"ms": "10001"}),
        ("/demo/io-async", {"ms": "-1"}),
        ("/demo/upstream", {"ms": "x"}),
        ("/demo/db", {"ms": "1.5"}),
        ("/demo/cpu", {"n": "1"}),
        ("/demo/cpu", {"n": "500001"}),
    ],
)
def test_bad_parameters_get_400_with_a_message(client, path, query):
    response = client.get(path, query)
    assert response.status_code == 400
    (name,) = query
    assert response.json()["error"].startswith(f"{name} must be an integer from ")


def test_demo_endpoints_are_404_unless_enabled(client, settings):
    settings.DEMO_ENDPOINTS = False
    for path in ("/demo/io", "/demo/io-async", "/demo/db", "/demo/cpu", "/demo/upstream"):
        assert client.get(path).status_code == 404


def test_demo_endpoints_are_read_only(client):
    assert client.post("/demo/io").status_code == 405
    assert client.post("/demo/io-async").status_code == 405
