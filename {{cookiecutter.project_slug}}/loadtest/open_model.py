"""The open model on Locust: requests started on a schedule, whatever the server does.

A Locust user normally sends its next request when the last one is answered (a
closed loop): when the server stalls, its users wait, fewer requests are sent,
and the stall barely shows in the percentiles (coordinated omission). Here each
user of an `ArrivalUser` class starts a request every users ÷ rate seconds, each
in a greenlet of its own, so that the users together offer a constant rate
(LOADTEST_ARRIVAL_RATE requests/s) however long the answers take:

- each request's latency counts from its scheduled start, not from when it was
  sent: a request that had to wait (for the generator, or for a connection) has
  waited in the latency too. It is reported through Locust's own request event
  (FastHttpUser's catch_response), so Locust's statistics, CSV files and report
  are those of the open model;
- a request that starts more than LATE_S after its schedule is late: counted,
  never dropped. The generator could not keep up; the report says how many;
- what was offered, sent, answered and late goes to $LOADTEST_ARRIVALS_FILE as
  JSON when Locust quits, counted from the moment every user runs (when
  --reset-stats resets Locust's statistics); in Locust's distributed mode the
  workers report theirs to the master (report_to_master / worker_report events).
"""

import json
import os
import random
import time
from pathlib import Path

import gevent
from gevent.pool import Group
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

# A request that starts this long after its schedule is counted late: gevent's timers are
# good to about a millisecond, so anything beyond is the generator falling behind.
LATE_S = 0.010
# Connections each user may hold open at once: requests that pile up while a server stalls
# each need one. 100 users x 100 covers a 10 s stall at 1,000 requests/s.
CONNECTIONS_PER_USER = 100


class Arrivals:
    """What this process scheduled, started late and saw answered since the last reset."""

    def __init__(self):
        self.reset()
        self.by_worker = {}  # on a master: each worker's last report

    def reset(self):
        self.since = time.monotonic()
        self.until = None
        self.sent = self.late = self.answered = 0
        self.max_lag_s = 0.0

    def record_start(self, lag_s):
        self.sent += 1
        self.late += lag_s > LATE_S
        self.max_lag_s = max(self.max_lag_s, lag_s)

    def counts(self):
        seconds = (self.until or time.monotonic()) - self.since
        return {
            "seconds": seconds,
            "sent": self.sent,
            "late": self.late,
            "answered": self.answered,
            "max_lag_ms": self.max_lag_s * 1000,
        }

    def total(self):
        """This process's counts and its workers', added up."""
        parts = [self.counts(), *self.by_worker.values()]
        total = {key: sum(part[key] for part in parts) for key in ("sent", "late", "answered")}
        total["seconds"] = max(part["seconds"] for part in parts)
        total["max_lag_ms"] = max(part["max_lag_ms"] for part in parts)
        return total


arrivals = Arrivals()


def arrival_rate():
    return float(os.environ["LOADTEST_ARRIVAL_RATE"])


class ArrivalUser(FastHttpUser):
    """A user that starts a request every users ÷ rate seconds, answered or not."""

    abstract = True
    wait_time = constant(0)
    concurrency = CONNECTIONS_PER_USER
    scenario = None  # a loadtest.scenarios.Scenario: the requests, and their weights

    def on_start(self):
        self.in_flight = Group()

    def on_stop(self):
        self.in_flight.kill(block=False)

    @task
    def arrive(self):
        interval = self.environment.parsed_options.num_users / arrival_rate()
        # Each user starts at a random phase, so the users' requests spread evenly.
        scheduled = time.perf_counter() + random.uniform(0, interval)
        while True:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            self.in_flight.spawn(self.send, scheduled)
            scheduled += interval

    def send(self, scheduled):
        arrivals.record_start(time.perf_counter() - scheduled)
        requests = self.scenario.requests
        (request,) = random.choices(requests, weights=[r.weight for r in requests])
        with self.client.get(request.path, name=request.name, catch_response=True) as response:
            response.request_meta["response_time"] = (time.perf_counter() - scheduled) * 1000
        arrivals.answered += 1


@events.spawning_complete.add_listener
def count_from_here(**_kwargs):
    arrivals.reset()  # as --reset-stats resets Locust's statistics


@events.test_stop.add_listener
def stop_counting(**_kwargs):
    arrivals.until = time.monotonic()


@events.report_to_master.add_listener
def report(client_id, data):
    data["arrivals"] = arrivals.counts()


@events.worker_report.add_listener
def collect(client_id, data):
    if "arrivals" in data:
        arrivals.by_worker[client_id] = data["arrivals"]


@events.quitting.add_listener
def write_counts(environment, **_kwargs):
    path = os.environ.get("LOADTEST_ARRIVALS_FILE")
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    counts = arrivals.total() if isinstance(environment.runner, MasterRunner) else arrivals.counts()
    Path(path).write_text(json.dumps({"offered_rps": arrival_rate(), **counts}))
