"""Threads for the sync code of ASGI requests, kept from one request to the next.

Django runs an ASGI request's sync code (the signals of its start and end,
its middlewares' sync hooks, a sync view) in a thread of the request's own:
asgiref starts one as the request first needs it and joins it as the request
ends (from one more new thread since asgiref 3.13). The asgi worker lends each
request a thread from this pool instead, through asgiref 3.13's public way to
do it (a ThreadSensitiveContext given an executor, which it leaves running),
and takes it back once it has run all the request gave it, a call still
running after the client left included.

Measured (/demo/io-async?ms=50, 50 clients, two asgi presets on one CPU at
once): 4.8 ms of CPU a request with the pool, 5.6 without, in each of three
rounds 12 to 14 % less.

A kept thread serves requests one after the other, as a gthread worker's
threads do: Django's database connections and its other per-request state live
in the request's context, not in the thread. At most KEEP_IDLE idle threads are
kept (100 took 8 MB of a worker's memory here); a burst's extra ones end as
they come back.
"""

import collections
import contextlib
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext

KEEP_IDLE = 100  # the clients in flight that the numbers above were measured with
# asgiref 3.13 (Python 3.11 and later) takes an executor; before it, as on Python 3.10,
# each request gets Django's own thread.
LENDS = "executor" in inspect.signature(ThreadSensitiveContext).parameters


class RequestThreads:
    def __init__(self):
        self.idle = collections.deque()  # appended to from the threads themselves
        self.taking_back = threading.Lock()  # threads come back at once: keep KEEP_IDLE

    def lent(self):
        """Run one request's sync code in a kept thread: `async with threads.lent(): ...`."""
        return self.lent_thread() if LENDS else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def lent_thread(self):
        try:
            executor = self.idle.pop()
        except IndexError:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asgi-request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                yield
        finally:
            executor.submit(int).add_done_callback(lambda _: self.take_back(executor))

    def take_back(self, executor):
        """In the executor's thread, once it has run every call the request gave it."""
        with self.taking_back:
            kept = len(self.idle) < KEEP_IDLE
            if kept:
                self.idle.append(executor)
        if not kept:
            executor.shutdown(wait=False)
