"""The most requests per second a run could give: the bound its measured rate is judged by.

Operational laws, for a closed system of `users` clients that each send their
next request when the last one is answered (plus any think time of theirs):

- users: no more than users / cycle time (each user waits for its answer); in
  the open model (open_model.py), the rate offered instead: no more is asked;
- slots (Little's law): no more than the requests the preset runs at once
  (workers x threads or connections) / the time each one spends in the server;
- connections: for requests that hold a database connection while they wait,
  no more than the connections the preset may open / the time each is held;
- cpu: no more than the CPUs the server can use / the CPU time per request.
  On a machine the load generator shares, the CPUs it used are not the
  server's to use (and PostgreSQL's, when local, are not subtracted). The CPU
  time per request is the lower of the calibration's and the run's own
  (server CPU time / requests): on a shared virtual machine the same request
  cost anywhere from 10 to 18 ms of CPU from one second to the next, and the
  cheapest cost seen is the closest to the request's own.

The bound is the smallest of these, and names the one that binds. The times
come from calibration.py, measured on the idle server; a request mix weighs
each kind by its share.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """What one kind of request costs the server, measured alone on the idle server."""

    service_s: float  # time in the server: its wait plus its work
    cpu_s: float  # the server's CPU time for it
    cycle_s: float  # time from one request of a user to its next: service plus think time
    uses_database: bool = False


@dataclass(frozen=True)
class Capacity:
    """What the preset can run at once, as gunicorn and its start-up line report it."""

    slots: int | None  # requests in flight at once; None: no limit (the asgi worker)
    database_connections: int | None  # None: no more than one per slot
    cpus: float  # the server's CPU budget


@dataclass(frozen=True)
class Bound:
    rps: float
    limit: str  # users (offered, in the open model), slots, connections or cpu: the one that binds

    def efficiency(self, measured_rps):
        return measured_rps / self.rps if self.rps > 0 else None


def bound(users, mix, capacity, cpu_taken=0.0, cpu_s_in_run=None, offered_rps=None):
    """The bound of `users` sending the `mix` [(weight, Cost)] to a server of `capacity`.

    `cpu_s_in_run`: the server's CPU time per request during the run, if measured.
    `offered_rps`: an open-model run's arrival rate, which replaces the users' limit.
    `cpu_taken`: CPU the server's CPUs gave to others during the run (the upstream; the
    load generator on one CPU: report.cpu_taken_from_server).
    """
    total = sum(weight for weight, _ in mix)

    def mean(attribute, only_database=False):
        return sum(
            weight / total * getattr(cost, attribute)
            for weight, cost in mix
            if cost.uses_database or not only_database
        )

    limits = {"offered": offered_rps} if offered_rps else {"users": users / mean("cycle_s")}
    if capacity.slots is not None:
        limits["slots"] = capacity.slots / mean("service_s")
    database_s = mean("service_s", only_database=True)
    if database_s > 0 and capacity.database_connections is not None:
        limits["connections"] = capacity.database_connections / database_s
    cpu_s = min(mean("cpu_s"), cpu_s_in_run or float("inf"))
    if cpu_s > 0:
        cpus = max(capacity.cpus - cpu_taken, 0.0)
        limits["cpu"] = cpus / cpu_s
    limit = min(limits, key=limits.get)
    return Bound(rps=limits[limit] if math.isfinite(limits[limit]) else 0.0, limit=limit)
