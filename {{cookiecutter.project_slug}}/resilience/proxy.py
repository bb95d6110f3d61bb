"""A TCP proxy in front of PostgreSQL that can cut the database off and bring it back.

A database outage, made without touching the database: the PostgreSQL server
is shared (other databases, other people's tests), so it is never stopped.
The servers under test reach PostgreSQL through this proxy instead, by their
DATABASE_URL. `cut()` closes the proxy's listening socket and every proxied
connection, as a database restart or a network partition would: connections
in use fail, new ones are refused. `restore()` listens again on the same port.

It speaks no PostgreSQL: bytes in, bytes out, so it serves either driver.
It runs an asyncio loop in a thread of its own, for the session's threads to
call.
"""

import asyncio
import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

HOST = "127.0.0.1"
DEFAULT_POSTGRES_PORT = 5432
CHUNK = 65536


def upstream_of(database_url):
    """(host, port) of the PostgreSQL server a DATABASE_URL names."""
    parts = urlsplit(database_url)
    return parts.hostname or "localhost", parts.port or DEFAULT_POSTGRES_PORT


def through_proxy(database_url, port):
    """`database_url` with its host and port replaced by the proxy's."""
    parts = urlsplit(database_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{HOST}:{port}" if credentials else f"{HOST}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def reachable(host, port, timeout=3.0):
    """Whether something accepts connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class DatabaseProxy:
    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.port = None  # chosen by the system on start, kept across cuts
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")
        self._server = None
        self._connections = set()  # the transports of both sides of every proxied connection
        self._cuts = 0  # a connection accepted before a cut must not outlive it

    def __enter__(self):
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc_info):
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def cut(self):
        """Refuse new connections and drop every open one."""
        self._call(self._close())

    def restore(self):
        """Accept connections again, on the same port."""
        self._call(self._listen())

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self):
        self._server = await asyncio.start_server(
            self._proxy, HOST, self.port or 0, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self):
        if self._server is not None:
            self._server.close()  # closes the listening socket at once
            self._server = None
        for transport in list(self._connections):
            transport.abort()  # no flush, no goodbye: a dead server says nothing either
        self._connections.clear()
        self._cuts += 1

    async def _proxy(self, client_reader, client_writer):
        cuts = self._cuts
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        sides = (client_writer.transport, upstream_writer.transport)
        if self._cuts != cuts:  # cut while this connection was being made
            for transport in sides:
                transport.abort()
            return
        self._connections.update(sides)
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer),
                self._pipe(upstream_reader, client_writer),
            )
        finally:
            for transport in sides:
                self._connections.discard(transport)
                transport.abort()

    @staticmethod
    async def _pipe(reader, writer):
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        # One side said goodbye: pass it on, so that the other side's read ends too.
        with contextlib.suppress(OSError):
            writer.write_eof()
