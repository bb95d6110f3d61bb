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
    for path in ("/demo/io", "/demo/db", "/demo/cpu"):
        assert client.get(path).status_code == 404


def test_demo_endpoints_are_read_only(client):
    assert client.post("/demo/io").status_code == 405
