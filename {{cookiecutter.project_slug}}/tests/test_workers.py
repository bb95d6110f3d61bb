"""The presets' worker classes: the models they run, the limits they apply, how they recycle.

Requests are parsed by gunicorn's own parser from one end of a socket pair; the
test is the client at the other end. What needs real worker processes (slow
clients, recycling, a stop during boot) is tested in the template's
tests/test_presets.py and by `nox -s resilience`.
"""

import asyncio
import datetime
import email.utils
import logging
import multiprocessing
import socket
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from gunicorn import util
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http import RequestParser, wsgi
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import SUPPORTED_WORKERS, gasgi

from config.gunicorn import workers
from config.gunicorn.accesslog import KIT_FORMAT, AccessLogger, LazyAtoms, kit_line
from config.gunicorn.observability import requestid
from config.gunicorn.workers import asgi, lifecycle, limits, recycle, responses
from config.gunicorn.workers.threads import RequestThreads


@pytest.mark.parametrize("model", ["sync", "gthread", "gevent", "asgi"])
def test_each_preset_class_and_gunicorns_own_name_the_same_model(model):
    assert workers.model_of(workers.CLASSES[model]) == model
    assert workers.model_of(model) == model
    assert workers.model_of(SUPPORTED_WORKERS[model]) == model


def test_an_unknown_worker_class_is_its_own_name():
    assert workers.model_of("mypackage.MyWorker") == "mypackage.MyWorker"


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


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
        (b"GET / HTTP/1.0\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.7\r\nHost: a\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (10 * 2**20 + 1), 413),
    ],
)
def test_a_request_head_is_checked_before_anything_is_answered(connection, head, status):
    error, _ = limits.check_head(parsed(*connection, head))
    assert (error and error.status) == status


@pytest.mark.parametrize(
    ("head", "body_length"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 5),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", None),
    ],
)
def test_the_head_says_how_the_body_comes(connection, head, body_length):
    assert limits.check_head(parsed(*connection, head)) == (None, body_length)


def test_a_body_is_read_whole_before_the_application(connection):
    server, client = connection
    request = parsed(server, client, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
    client.sendall(b"hello")
    limits.buffer_body(request, server, 5)
    assert request.body.read() == b"hello"
    assert server.gettimeout() is None  # blocking again, as the worker had it


def test_a_chunked_body_is_read_whole_and_stops_at_the_limit(connection, monkeypatch):
    server, client = connection
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    request = parsed(server, client, head, b"5\r\nhello\r\n0\r\n\r\n")
    limits.buffer_body(request, server, None)
    assert request.body.read() == b"hello"
    limits.release_body(request)
    assert request.body.read() == b""  # what gunicorn's parser finds before the next request

    monkeypatch.setattr(limits, "MAX_REQUEST_BODY", 8)
    request = parsed(server, client, head, b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
    with pytest.raises(limits.Refusal) as refused:
        limits.buffer_body(request, server, None)
    assert refused.value.status == 413
    assert request.should_close()


def test_a_body_that_stops_arriving_is_a_408(connection, monkeypatch):
    monkeypatch.setattr(limits, "BODY_STALL_TIMEOUT", 0.2)
    server, client = connection
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
    request = parsed(server, client, head, b"12345")
    with pytest.raises(limits.Refusal) as refused:
        limits.buffer_body(request, server, 10)
    assert refused.value.status == 408
    assert refused.value.line == "request body of 10 bytes stopped arriving"
    assert request.should_close()

    request = parsed(server, client, head, b"12345")
    client.shutdown(socket.SHUT_WR)  # the client leaves
    with pytest.raises(limits.Refusal) as refused:
        limits.buffer_body(request, server, 10)
    assert refused.value.line == "request body of 10 bytes ended after 5 bytes"


def test_100_continue_is_sent_once_before_the_body_is_read(connection):
    # gunicorn's parser records the expectation in a private attribute, which the kit reads
    # and clears so that gunicorn does not send it again: checked on this gunicorn.
    server, client = connection
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    request = parsed(server, client, head)
    assert request._expected_100_continue is True
    client.sendall(b"ok")
    limits.buffer_body(request, server, 2)
    assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert request._expected_100_continue is False


def test_the_access_line_is_gunicorns_own(connection):
    server, client = connection
    head = (
        b'GET /a?b=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: say "hi"\r\nReferer: /r\r\n'
        b"Authorization: Basic dXNlcjpwdw==\r\nX-Request-ID: abc\r\n\r\n"
    )
    request = parsed(server, client, head)
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set(
        "access_log_format",
        '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)s %(D)s %(L)s %(m)s %(U)s '
        "%(q)s %(H)s %({x-request-id}i)s %({content-type}o)s %({remote_addr}e)s %(missing)s",
    )
    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/a?b=1",
        "PATH_INFO": "/a",
        "QUERY_STRING": "b=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": 'say "hi"',
        "HTTP_REFERER": "/r",
        "HTTP_AUTHORIZATION": "Basic dXNlcjpwdw==",
    }

    class Response:
        status = "200 OK"
        sent = 42
        headers = (("Content-Type", "application/json"),)

    took = datetime.timedelta(seconds=1, microseconds=2345)
    lines = []
    for logger in (Logger(cfg), AccessLogger(cfg)):
        logger.access_fd = None  # through logging, to read it here
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(record.getMessage())
        logger.access_log.addHandler(handler)
        try:
            logger.access(Response, request, environ, took)
        finally:
            logger.access_log.removeHandler(handler)
    gunicorns, ours = lines
    assert ours == gunicorns
    assert '"say \\"hi\\""' in ours and " user " in ours and " abc application/json " in ours


@pytest.mark.parametrize(
    "environ",
    [
        {"REMOTE_ADDR": "10.0.0.1", "HTTP_USER_AGENT": 'say "hi"', "HTTP_REFERER": "/r"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwdw=="},  # the user, no address
        {"RAW_URI": '/a"b?c=1'},  # a quote in the request line
        {"REMOTE_ADDR": ""},  # a Unix socket's peer
        {},
    ],
)
def test_the_presets_line_is_the_one_its_format_gives(environ):
    # The presets' format is formatted by one f-string, not by its atoms: the same line.
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", **environ}

    class Response:
        status = "404 Not Found"
        sent = 179 if "REMOTE_ADDR" in environ else None
        headers = ()

    logger = AccessLogger(Config())
    took = datetime.timedelta(seconds=2, microseconds=3456)
    token = requestid.current.set("rid-1" if "REMOTE_ADDR" in environ else None)
    try:
        expected = KIT_FORMAT % LazyAtoms(logger, Response, None, environ, took)
        assert kit_line(logger, LazyAtoms.status(Response), Response, environ, took) == expected
    finally:
        requestid.current.reset(token)


class CountedSocket:
    """The worker's end of a socket pair, counting the calls that send."""

    def __init__(self, sock):
        self.sock, self.sends = sock, 0

    def send(self, data, *flags):
        self.sends += 1
        return self.sock.send(data, *flags)

    def sendall(self, data, *flags):
        self.sends += 1
        return self.sock.sendall(data, *flags)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def written(head, headers, body, through_response_socket):
    """What gunicorn writes for a request `head` answered with `headers` and `body` (its
    pieces), without its Date line, and how many calls sent it."""
    server, client = socket.socketpair()
    received = []
    reader = threading.Thread(target=lambda: received.extend(iter(lambda: client.recv(65536), b"")))
    try:
        request = parsed(server, client, head)
        reader.start()
        counted = CountedSocket(server)
        sock = responses.ResponseSocket(counted) if through_response_socket else counted
        response, _ = wsgi.create(request, sock, ("127.0.0.1", 0), ("127.0.0.1", 80), Config())
        response.start_response("200 OK", list(headers))
        for piece in body:
            response.write(piece)
        response.close()
        if through_response_socket:
            sock.finish()
        server.shutdown(socket.SHUT_WR)
        reader.join(10)
    finally:
        server.close()
        client.close()
    lines = b"".join(received).split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.startswith(b"Date: ")), counted.sends


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
JSON = ("Content-Type", "application/json")


@pytest.mark.parametrize(
    ("head", "headers", "body", "gunicorns_sends", "sends"),
    [
        (GET, [JSON, ("Content-Length", "2")], [b"{}"], 2, 1),
        (GET, [JSON], [b"{}"], 3, 2),  # chunked, as /healthz: the last chunk apart
        (GET, [("Content-Length", "4")], [b"ab", b"cd"], 3, 2),
        (b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", [JSON, ("Content-Length", "2")], [b"{}"], 1, 1),
        (GET, [("Content-Length", "70000")], [b"x" * 70_000], 2, 2),  # too large to join
    ],
)
def test_a_response_is_the_one_gunicorn_writes_in_fewer_sends(
    head, headers, body, gunicorns_sends, sends
):
    gunicorns = written(head, headers, body, through_response_socket=False)
    assert gunicorns[1] == gunicorns_sends  # gunicorn's own count, on this gunicorn
    assert written(head, headers, body, through_response_socket=True) == (gunicorns[0], sends)


def test_an_interim_response_goes_at_once_and_the_head_after_it_waits_for_the_body(connection):
    server, client = connection
    counted = CountedSocket(server)
    sock = responses.ResponseSocket(counted)
    sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
    assert counted.sends == 1
    assert client.recv(100).startswith(b"HTTP/1.1 103 ")
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    assert counted.sends == 1  # held
    sock.sendall(b"{}")
    assert counted.sends == 2
    assert client.recv(100) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def test_the_date_header_is_formatted_once_a_second():
    responses.date_once_a_second()  # as each WSGI worker's module does
    before = int(time.time())
    first, second = util.http_date(), util.http_date()
    after = int(time.time())
    assert first is second or before != after  # the same string, not formatted again
    assert first in {email.utils.formatdate(moment, usegmt=True) for moment in (before, after)}
    assert util.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"  # a given time: formatted


def test_a_plain_connections_next_request_is_read_ahead_into_gunicorns_buffer(connection):
    from config.gunicorn.workers.gevent import Connection, RequestHeadWait

    server, client = connection
    server.setblocking(False)  # as gevent's sockets are, below their cooperative methods
    unreader = SocketUnreader(server)

    class Worker:
        cfg = Config()  # no certificate: plain connections

    head_wait = RequestHeadWait(Worker, Connection(("127.0.0.1", 0), shed=False))
    fileno = server.fileno()
    try:
        assert head_wait.received(unreader, fileno) is False  # nothing yet: the worker waits
        client.sendall(b"GET / HTTP/1.1\r\n")
        assert head_wait.received(unreader, fileno) is True
        assert unreader.read() == b"GET / HTTP/1.1\r\n"  # where gunicorn's parser reads
        client.close()
        assert head_wait.received(unreader, fileno) is True  # the end: gunicorn reads it, closes
        assert unreader.read() == b""
    finally:
        head_wait.close()


def test_settled_settings_read_as_gunicorn_reads_them_without_its_getattr(monkeypatch):
    # The one place the kit goes around gunicorn's Config (workers/lifecycle.py), checked on
    # this gunicorn: once settled, every setting and every property reads the same, and a
    # setting is read without Config.__getattr__.
    cfg = Config()
    cfg.set("workers", 3)
    cfg.set("certfile", "/etc/service.pem")
    properties = [name for name, value in vars(Config).items() if isinstance(value, property)]

    def every_value():
        return {name: getattr(cfg, name) for name in [*cfg.settings, *properties]}

    before = every_value()
    lifecycle.settle(cfg)
    looked_up = []
    gunicorns = Config.__getattr__

    def counted(cfg, name):
        looked_up.append(name)
        return gunicorns(cfg, name)

    monkeypatch.setattr(Config, "__getattr__", counted)
    assert every_value() == before
    assert looked_up == []
    assert cfg.workers == 3 and cfg.is_ssl


def take_turn_in_a_child(interval_s, queue):
    queue.put(recycle.take_turn(interval_s))


def test_one_worker_at_a_time_and_at_most_once_an_interval():
    context = multiprocessing.get_context("fork")  # as gunicorn's workers: forked
    queue = context.Queue()
    recycle.turns()  # made by the master (MemoryRecycle, in the worker's __init__)

    def turn(interval_s):
        child = context.Process(target=take_turn_in_a_child, args=(interval_s, queue))
        child.start()
        child.join()
        return queue.get()

    assert turn(0.0) is True  # nobody recycled yet; the child's lock ended with it
    assert turn(3600) is False  # the last turn began under an hour ago
    assert recycle.take_turn(0.0) is True  # this process holds the turn now...
    assert turn(0.0) is False  # ...and no other can take it until it ends


def test_a_worker_is_due_once_grown_past_its_warm_size(monkeypatch):
    sizes = iter([100, 150, 700])  # MiB: warm, grown 50, grown 600
    monkeypatch.setattr(recycle, "resident_bytes", lambda: next(sizes) * recycle.MIB)
    monkeypatch.setattr(recycle, "CHECK_EVERY_S", 0)
    monkeypatch.setattr(recycle, "take_turn", lambda interval_s: True)
    policy = recycle.MemoryRecycle(growth_mib=256, interval_s=60)
    assert policy.due(served=recycle.WARMUP_REQUESTS - 1) is None  # warming up: not measured
    assert policy.due(served=recycle.WARMUP_REQUESTS) is None  # its warm size: 100 MiB
    assert policy.due(served=recycle.WARMUP_REQUESTS + 1) is None  # 50 MiB more
    reason = policy.due(served=recycle.WARMUP_REQUESTS + 2)
    assert reason.startswith("RSS 700 MiB, 600 MiB over its 100 MiB after warm-up")
    assert recycle.MemoryRecycle(growth_mib=0, interval_s=60).due(10**9) is None  # off


def test_the_asgi_worker_builds_its_connections_from_gunicorns_module_attribute():
    # The one private name the asgi worker relies on: checked on this gunicorn.
    from gunicorn.asgi.protocol import ASGIProtocol

    assert gasgi.ASGIProtocol is ASGIProtocol
    assert issubclass(asgi.HeadDeadlineProtocol, ASGIProtocol)


class Worker:
    nr_conns = 0  # what gunicorn's graceful stop waits for


def asgi_request(headers, body_messages=(), path=b"/"):
    """Run one HTTP request through the asgi worker's guard; (what the app got, what was sent)."""
    seen, sent = [], []

    async def application(scope, receive, send):
        message = await receive()
        seen.append((scope["path"], message.get("body", b"")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = iter(body_messages or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "path": path.decode(),
        "raw_path": path,
        "headers": headers,
        "client": ("127.0.0.1", 5000),
    }
    guarded = asgi.guard(
        application, logging.getLogger("test"), asgi.Traffic(Worker()), RequestThreads()
    )
    asyncio.run(guarded(scope, receive, send))
    return seen, sent


def test_the_asgi_guard_refuses_what_the_wsgi_workers_refuse():
    too_large = str(limits.MAX_REQUEST_BODY + 1).encode()
    seen, sent = asgi_request([(b"host", b"a"), (b"content-length", too_large)])
    assert seen == [] and sent[0]["status"] == 413
    seen, sent = asgi_request([])
    assert seen == [] and sent[0]["status"] == 400  # HTTP/1.1 without a Host


def test_a_replaced_asgi_worker_says_close_and_counts_the_responses_that_promised_keep_alive():
    worker = Worker()
    traffic = asgi.Traffic(worker)
    under_way = []
    connections = []

    async def application(scope, receive, send):
        connections.append(worker.nr_conns)  # the request counts until it ends
        await send({"type": "http.response.start", "status": 200, "headers": []})
        under_way.append(traffic.promised)
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "http_version": "1.1", "raw_path": b"/", "headers": [(b"host", b"a")]}
    guarded = asgi.guard(application, logging.getLogger("test"), traffic, RequestThreads())
    sent = []
    asyncio.run(guarded(scope, None, send))
    assert (b"connection", b"close") not in sent[0]["headers"]
    assert under_way == [1] and traffic.promised == 0  # from its head to its end
    traffic.closing = True
    sent = []
    asyncio.run(guarded(scope, None, send))
    assert (b"connection", b"close") in sent[0]["headers"]
    assert under_way == [1, 0] and traffic.promised == 0
    assert connections == [1, 1] and worker.nr_conns == 0


def test_asgi_requests_run_their_sync_code_in_kept_threads_one_request_at_a_time(monkeypatch):
    monkeypatch.setattr("config.gunicorn.workers.threads.KEEP_IDLE", 2)
    threads = RequestThreads()
    release = threading.Event()
    blocked_in = []

    def block():
        blocked_in.append(threading.get_ident())
        release.wait(10)

    async def request(calls=2):
        async with threads.lent():
            return {await sync_to_async(threading.get_ident)() for _ in range(calls)}

    async def left_with_a_call_running():
        async with threads.lent():
            call = asyncio.ensure_future(sync_to_async(block)())
            await asyncio.sleep(0.05)
            call.cancel()  # the client left; the call goes on in its thread

    async def scenario():
        first = await request()
        await asyncio.sleep(0.05)  # its thread comes back once it has run the request's calls
        second = await request()
        at_once = await asyncio.gather(*(request() for _ in range(4)))
        await asyncio.sleep(0.05)
        kept = len(threads.idle)
        await left_with_a_call_running()
        try:
            during_the_call = await asyncio.wait_for(request(), 2)
        finally:
            release.set()
        return first, second, at_once, kept, during_the_call

    first, second, at_once, kept, during_the_call = asyncio.run(scenario())
    assert len(first) == 1 and first == second  # a thread a request, kept for the next
    assert len(set.union(*at_once)) == 4  # requests at once: a thread each
    assert kept == 2  # KEEP_IDLE; the others ended as they came back
    # The thread still running a call of a request that has ended waits to be lent again.
    assert len(during_the_call) == 1 and blocked_in[0] not in during_the_call


def test_the_asgi_guard_gives_the_application_the_whole_body_and_the_path():
    chunks = [
        {"type": "http.request", "body": b"hel", "more_body": True},
        {"type": "http.request", "body": b"lo", "more_body": False},
    ]
    headers = [(b"host", b"a"), (b"transfer-encoding", b"chunked")]
    seen, sent = asgi_request(headers, chunks, path=b"http://a/admin/")
    assert seen == [("/admin/", b"hello")]
    assert sent[0]["status"] == 200
