"""The kit's observability parts, one at a time: settings, request IDs, metrics files, logs.

What needs real gunicorn processes (the scrape under load, workers killed and
recycled, /livez, Sentry and OpenTelemetry endpoints) is tested by the template's
tests/test_observability.py.
"""

import datetime
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from django.test import override_settings
from gunicorn.config import Config

from config.gunicorn.accesslog import AccessLogger
from config.gunicorn.environment import BadSetting
from config.gunicorn.observability import lab, liveness, logs, loopwatch, metrics, requestid, routes
from config.gunicorn.observability.settings import read_observability


def test_defaults():
    settings = read_observability({})
    assert (settings.metrics_port, settings.metrics_bind) == (9191, "127.0.0.1")
    assert settings.metrics and settings.log_format == "text"
    assert settings.sentry_dsn is None and settings.otlp_endpoint is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"METRICS_PORT": "99999"}, "METRICS_PORT='99999' is out of range: use 1 to 65535"),
        ({"METRICS_BIND": "example.com"}, "METRICS_BIND='example.com' is not an IP address"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' is not text or json"),
        ({"GUNICORN_METRICS": "maybe"}, "GUNICORN_METRICS='maybe' is not true or false"),
    ],
)
def test_a_bad_value_is_one_line(environ, expected):
    with pytest.raises(BadSetting) as refused:
        read_observability(environ)
    assert str(refused.value).startswith(expected)
    assert "\n" not in str(refused.value)


# -- request IDs ---------------------------------------------------------------------------


def test_ids_are_32_hex_digits_and_differ_in_a_forked_process():
    first, second = requestid.ids.new(), requestid.ids.new()
    assert len(first) == 32 and int(first, 16) and first != second
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads: this child only writes.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: a worker
        os.write(write, requestid.ids.new().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child[:16] != first[:16], "each worker has a prefix of its own"


@pytest.mark.parametrize(
    ("sent", "trusted", "kept"),
    [
        ("nginx-5f2a", True, True),
        ("nginx-5f2a", False, False),  # a client cannot choose it
        ('bad id"\n', True, False),  # nor break a log line, even through a proxy
        ("x" * 129, True, False),
        (None, True, False),
    ],
)
def test_an_id_is_kept_only_from_a_trusted_peer_and_only_if_it_is_one_token(sent, trusted, kept):
    chosen = requestid.chosen(sent, trusted)
    assert (chosen == sent) is kept
    if not kept:
        assert len(chosen) == 32


def test_the_application_and_the_response_get_the_id_never_what_an_untrusted_peer_sent():
    seen, sent_headers = [], []

    def application(environ, start_response):
        seen.append(environ.get("HTTP_X_REQUEST_ID"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    token = requestid.current.set("rid-3")  # what request_scope chose
    try:
        requestid.wsgi(application)(
            {"HTTP_X_REQUEST_ID": "chosen-by-client"},
            lambda status, headers, exc_info=None: sent_headers.extend(headers),
        )
    finally:
        requestid.current.reset(token)
    assert seen == ["rid-3"]
    assert ("X-Request-ID", "rid-3") in sent_headers


@pytest.mark.parametrize(
    ("allowed", "address", "trusted"),
    [
        ("127.0.0.1,::1", "127.0.0.1", True),
        ("127.0.0.1,::1", "10.0.0.7", False),
        ("10.0.0.0/8", "10.0.0.7", True),
        ("*", "203.0.113.9", True),
        ("", "127.0.0.1", False),
        ("10.0.0.0/8", "not an address", False),
    ],
)
def test_trusted_peers_are_gunicorns_forwarded_allow_ips(allowed, address, trusted):
    assert requestid.TrustedPeers(allowed)(address) is trusted


# -- metrics -------------------------------------------------------------------------------


def test_an_observation_goes_to_the_first_bucket_that_holds_it():
    histograms = metrics.Histograms((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        histograms.observe(("demo", "GET", "200"), seconds)
    ((key, counts),) = histograms.take().items()
    assert key == ("demo", "GET", "200")
    assert counts == [pytest.approx(3.65), 2, 1, 1]  # sum, le=0.1, le=1, +Inf
    assert histograms.take() == {}


def test_an_unknown_method_is_other():
    assert metrics.route_method("GET") == "GET"
    assert metrics.route_method("BREW") == "other"


WORKER_SCRIPT = """
import os, sys
from prometheus_client import Histogram, Counter
from config.gunicorn.observability import metrics

requests = Histogram("gunicorn_request_duration_seconds", "h", ["route"],
                     buckets=metrics.REQUEST_BUCKETS, registry=None)
histograms = metrics.Histograms(metrics.REQUEST_BUCKETS)
for seconds in (0.003, 0.04, 0.04, 2.0):
    histograms.observe(("demo",), seconds)
for key, counts in histograms.take().items():
    metrics.add_observations(requests.labels(*key), counts)
exits = Counter("gunicorn_worker_exits", metrics.EXITS_HELP, ["reason"], registry=None)
if sys.argv[1] == "said-why":
    exits.labels("recycled").inc()
print(os.getpid())
"""


def run_worker(directory, said_why):
    """A process that writes metrics as a worker does; its pid."""
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKER_SCRIPT), "said-why" if said_why else "-"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


def collected(directory):
    """The summed samples of a directory, as the metrics server reads it."""
    script = (
        "import sys, json\n"
        "from prometheus_client.multiprocess import MultiProcessCollector\n"
        "samples = {s.name + json.dumps(s.labels, sort_keys=True): s.value\n"
        "           for m in MultiProcessCollector(None, path=sys.argv[1]).collect()\n"
        "           for s in m.samples}\n"
        "print(json.dumps(samples))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(directory)], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_observations_added_at_once_read_as_one_at_a_time_and_survive_the_worker(tmp_path):
    from config.gunicorn.observability import files

    first = run_worker(tmp_path, said_why=True)
    second = run_worker(tmp_path, said_why=False)
    before = collected(tmp_path)
    count = 'gunicorn_request_duration_seconds_count{"route": "demo"}'
    assert before[count] == 8
    assert before['gunicorn_request_duration_seconds_bucket{"le": "0.005", "route": "demo"}'] == 2
    assert before['gunicorn_request_duration_seconds_bucket{"le": "0.05", "route": "demo"}'] == 6
    assert before['gunicorn_request_duration_seconds_sum{"route": "demo"}'] == pytest.approx(4.166)

    assert files.retire(tmp_path, first) is True  # it recorded why it ended
    assert files.retire(tmp_path, second) is False  # killed: it could not
    assert collected(tmp_path) == before  # nothing lost, nothing counted twice
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "counter_archive.db",
        "histogram_archive.db",
        "lock",
    ]


def test_the_histogram_child_has_what_add_observations_writes_through():
    # prometheus_client's own observe() writes through these: add_observations relies on them.
    from prometheus_client import Histogram

    child = Histogram("x_seconds", "x", buckets=(0.1, 1.0), registry=None)
    assert hasattr(child, "_sum") and len(child._buckets) == 3


# -- lab -----------------------------------------------------------------------------------


def test_quantiles_interpolate_within_a_bucket_as_prometheus_does():
    cumulative = {0.05: 0.0, 0.1: 100.0, float("inf"): 100.0}
    assert lab.quantile(0.99, cumulative) == pytest.approx(0.0995)
    assert lab.quantile(0.5, {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}) == pytest.approx(0.1)
    assert lab.quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None


def test_figures_are_what_happened_between_two_scrapes():
    def histogram(name, route, counts):
        bounds = ["0.05", "0.1", "+Inf"]
        samples = {
            (f"{name}_bucket", (("le", le), ("route", route))): c
            for le, c in zip(bounds, counts, strict=True)
        }
        samples[(f"{name}_count", (("route", route),))] = counts[-1]
        return samples

    name = "gunicorn_request_duration_seconds"
    before = {**histogram(name, "demo-io", [10, 10, 10]), **histogram(name, "healthz", [5, 5, 5])}
    after = {**histogram(name, "demo-io", [10, 110, 110]), **histogram(name, "healthz", [9, 9, 9])}
    after[("gunicorn_worker_boots_total", ())] = 3.0
    before[("gunicorn_worker_boots_total", ())] = 2.0
    figures = lab.figures(before, after, {"gunicorn_saturation": 0.97})
    assert figures[f"{name}_count"] == 100  # the probes apart
    assert figures[f"{name}_p99"] == pytest.approx(0.0995)
    assert figures["gunicorn_saturation_max"] == 0.97
    assert figures["gunicorn_worker_boots_total"] == 1
    assert figures["gunicorn_db_pool_wait_seconds_p99"] is None


# -- liveness ------------------------------------------------------------------------------


class Arbiter:
    def __init__(self, workers):
        self.WORKERS = workers


class Tmp:
    def __init__(self, beat):
        self.beat = beat

    def last_update(self):
        return self.beat


class Worker:
    def __init__(self, tmp):
        self.tmp = tmp


def test_livez_judges_the_masters_record_of_its_workers(tmp_path):
    now = time.monotonic()
    assert liveness.verdict(tmp_path, 30)[0] is False  # nothing recorded yet
    watched = [liveness.Watched(Tmp(now - 40), None), liveness.Watched(Tmp(now - 2), None)]
    record = liveness.Record(tmp_path, Arbiter({1: Worker(watched[0]), 2: Worker(watched[1])}))
    for each in watched:
        each.record = record
        each.last_update()
    alive, why = liveness.verdict(tmp_path, 30)
    assert alive, why
    assert "2 workers" in why
    alive, why = liveness.verdict(tmp_path, 1, now=now + 1.5)  # the newest beat is too old
    assert not alive and "no worker has reported for 3.5 s" in why
    alive, why = liveness.verdict(tmp_path, 100, now=now + 12)  # the master stopped reading
    assert not alive and "master's loop" in why


# -- logs ----------------------------------------------------------------------------------


def test_a_json_line_carries_the_request_id_and_the_traceback_in_one_object():
    token = requestid.current.set("rid-1")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.getLogger("x").makeRecord(
                "x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
            )
        logs.RequestIdFilter().filter(record)
        line = logs.JsonFormatter().format(record)
    finally:
        requestid.current.reset(token)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["request_id"] == "rid-1" and parsed["message"] == "failed here"
    assert parsed["level"] == "ERROR" and "ValueError: boom" in parsed["exception"]
    assert record.request_id == "rid-1"


class Response:
    status = "404 Not Found"
    sent = 179
    headers = ()


def test_the_json_access_line_parses(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "json")
    logger = AccessLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": '/a"b?c=1',
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_USER_AGENT": 'quote " and \\ backslash',
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    token = requestid.current.set("rid-2")
    try:
        from config.gunicorn.accesslog import LazyAtoms, json_line

        status = LazyAtoms.status(Response())
        line = json_line(status, Response(), environ, datetime.timedelta(microseconds=1500))
    finally:
        requestid.current.reset(token)
    parsed = json.loads(line)
    assert parsed["request_id"] == "rid-2" and parsed["status"] == 404
    assert parsed["path"] == '/a"b?c=1' and parsed["user_agent"] == 'quote " and \\ backslash'
    assert parsed["duration_ms"] == 1.5 and parsed["bytes"] == 179 and parsed["referer"] is None
    assert logger is not None


# -- routes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "route"), [("/healthz", "healthz"), ("/nowhere", "unmatched")])
def test_a_request_is_named_by_its_route_never_its_path(client, path, route):
    response = client.get(path)
    assert response.wsgi_request.META[routes.KEY] == route


@override_settings(ROOT_URLCONF="tests.test_observability")
def test_a_routed_request_is_named_by_its_view_name(client):
    response = client.get("/items/12345/")
    assert response.status_code == 200
    assert response.wsgi_request.META[routes.KEY] == "item"


def item(request, pk):
    from django.http import HttpResponse

    return HttpResponse(str(pk))


def _urlpatterns():
    from django.urls import path

    return [path("items/<int:pk>/", item, name="item")]


urlpatterns = _urlpatterns()


def test_the_loop_monitor_is_gevents_and_still_reports_a_greenlet_that_computes():
    """LoopMonitor subclasses gevent's private monitor class: this runs it on the installed
    gevent, with a real hub (in a thread of its own: the test process is not patched)."""
    import gevent
    from gevent import events

    reports = []

    def hub_thread():
        hub = gevent.get_hub()
        monitor = loopwatch.LoopMonitor(hub)
        events.subscribers.append(reports.append)
        try:
            gevent.spawn(compute_for, 0.5).join()  # blocks the loop: no greenlet switches
            gevent.sleep(0.3)
        finally:
            events.subscribers.remove(reports.append)
            monitor.kill()
            hub.destroy(destroy_loop=True)

    thread = threading.Thread(target=hub_thread)
    thread.start()
    thread.join(10)
    blocked = [event for event in reports if isinstance(event, events.EventLoopBlocked)]
    assert blocked, reports
    assert any("compute_for" in line for line in blocked[0].info), blocked[0].info


def compute_for(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def test_a_thread_asleep_in_a_call_holds_the_loop_and_an_unknown_one_always_does():
    """A C library's own I/O sleeps in a call: that is a block, and counts in full. Where
    Linux's scheduler statistics are missing, every check is made, as gevent makes them."""
    if not os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat"):
        pytest.skip("no /proc/<pid>/task/<id>/schedstat (Linux's scheduler statistics)")
    asleep = threading.Event()
    sleeper = threading.Thread(target=lambda: asleep.set() or time.sleep(0.3))
    sleeper.start()
    asleep.wait()
    held = loopwatch.LoopThreadTime(sleeper.native_id)
    time.sleep(0.1)
    assert held.held(0.05)  # asleep in time.sleep() for 0.1 s: held, not waiting for a CPU
    assert not held.held(0.05)  # just looked: nothing since
    sleeper.join()
    assert loopwatch.LoopThreadTime(-1).held(0.05)
