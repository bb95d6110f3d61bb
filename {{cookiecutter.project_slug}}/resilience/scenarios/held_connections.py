"""held-connections: thousands of connections held open, at and beyond what a preset holds.

Nine in ten send a full request (GET /healthz, kept alive) then part of a
second head; one in ten declares a 1 MB body and sends one byte of it
(held_clients.py). gevent is the preset where the number matters: each worker
serves worker_connections (1000) at once, so it runs at that times its workers,
then 10 % beyond, where a worker sheds what it cannot hold (503, probes still
served). The others get 2,100 at once, as the report that gevent's worker once
let every /healthz wait 30 s did.

/healthz is probed on a fresh connection every 0.5 s. gevent and asgi, and
every preset through nginx, must keep answering it, and close every held
connection within its bound: the second head's REQUEST_HEAD_TIMEOUT (10 s;
the keep-alive timeout before it, 75 s, is ended by its first byte) and the
body's 10 s stall (a 408). sync and gthread give each held connection a worker
or a thread: on their own they stall ("needs the proxy", as with slowloris),
and must serve again once the clients go.
"""

import resource
import statistics
import time
from collections import Counter

from .. import nginx
from ..clients import Load, get
from ..held_clients import HeldConnections
from ..report import Row, in_seconds
from .context import serving

HELD_AS_REPORTED = 2_100
BEYOND = 1.1  # gevent: 10 % over its capacity
BODY_SHARE = 10  # one connection in ten holds a body
BOUND_S = 10.0  # the second head's timeout, and the body's stall
# Past the bound, what closing 2,000 connections on 2 busy CPUs takes: the workers' timers
# and this client's one thread (measured: within 1.5 s).
MARGIN_S = 3.0
OPENING_S = 30.0  # the longest the connections may take to open and hold
HEALTHZ_INTERVAL_S = 0.5
HEALTHZ_TIMEOUT_S = 2.0
STALL_S = 1.0
NEEDS_PROXY = ("sync", "gthread")
ANSWERS_AFTER = 5  # /healthz, one after the other, once the clients are gone


def held_connections(preset, context):
    loads = held_counts(preset, context.config[preset])
    open_files_for(max(count for count, _ in loads))
    rows = []
    with serving(preset, context, "held-connections") as (server, _):
        for load in loads:
            rows.append(hold(server.port, load, Row("held-connections", preset), context))
        rows.append(
            nginx.row_through_nginx(
                "held-connections",
                preset,
                server,
                context,
                lambda port, row: hold(port, loads[-1], row, context),
            )
        )
    return rows


def held_counts(preset, config):
    """(connections to hold at once, what that is): gevent's capacity and 10 % beyond it;
    2,100 for the others."""
    if preset != "gevent":
        return [(HELD_AS_REPORTED, "as reported")]
    connections, workers = int(config["worker_connections"]), int(config["workers"])
    capacity = connections * workers
    return [
        (capacity, f"its capacity, {connections} x {workers} workers"),
        (round(capacity * BEYOND), "10 % beyond its capacity"),
    ]


def open_files_for(connections):
    """Raise this process's soft limit on open files (the servers it starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * connections + 1024
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def hold(port, load, row, context):
    count, row.details["load"] = load
    needs_proxy = row.via == "direct" and row.preset in NEEDS_PROXY
    bodies = count // BODY_SHARE
    with (
        Load(port, "/healthz", 1, HEALTHZ_INTERVAL_S, HEALTHZ_TIMEOUT_S) as probe,
        HeldConnections(port, count - bodies, bodies) as held,
    ):
        started = time.monotonic()
        if needs_proxy:
            stall_s = context.duration(20.0, 5.0)
            held.run(until=lambda: time.monotonic() - started > stall_s)
        else:
            held.run(until=lambda: past_every_bound(held, started))
        seconds = time.monotonic() - started
    answers = [get(port, "/healthz") for _ in range(ANSWERS_AFTER)]
    row.count(probe.outcomes, unanswered_is_failure=needs_proxy)
    describe(row, held.connections, probe.outcomes, answers, seconds)
    if needs_proxy:
        stalled = row.details["healthz_stalled"]
        row.notes.append(
            f"/healthz stalled {stalled} of {len(probe.outcomes)} times: needs the proxy"
            if stalled
            else "/healthz did not stall"
        )
    else:
        check_held(row, held.connections, probe.outcomes)
    row.check(
        f"/healthz answers {ANSWERS_AFTER} of {ANSWERS_AFTER} once the clients are gone",
        all(answer.status == 200 for answer in answers),
        ", ".join(str(answer.status or answer.error) for answer in answers),
    )
    return row


def past_every_bound(held, started):
    """Whether every connection has held for its bound and margin (or opening took too long)."""
    now = time.monotonic()
    if now - started > OPENING_S + BOUND_S + MARGIN_S:
        return True
    return not held.to_open and now - (held.last_held_at or now) > BOUND_S + MARGIN_S


def describe(row, connections, probes, answers, seconds):
    heads = [held for held in connections if held.kind == "head"]
    bodies = [held for held in connections if held.kind == "body"]
    stalled = [probe for probe in probes if probe.status != 200 or probe.seconds > STALL_S]
    slowest = max((probe.seconds for probe in probes), default=None)
    row.details.update(
        connections=len(connections),
        opening_s=opening_s(connections),
        heads=len(heads),
        bodies=len(bodies),
        seconds=seconds,
        never_held=dict(Counter(held.ended_by for held in connections if held.held_at is None)),
        left_open=sum(1 for held in connections if held.ended_by == "still open"),
        first_statuses=dict(Counter(str(held.first_status) for held in heads)),
        head_closed_after_s=spread([held.closed_after_s for held in heads]),
        body_statuses=dict(Counter(str(held.status) for held in bodies)),
        body_answered_after_s=spread([held.answered_after_s for held in bodies]),
        body_closed_after_s=spread([held.closed_after_s for held in bodies]),
        healthz_stalled=len(stalled),
        healthz_slowest_s=slowest,
        statuses_after=[answer.status for answer in answers],
    )
    details = row.details
    row.notes.append(
        f"{len(connections):,} held ({details['load']}); "
        f"heads closed after {describe_spread(details['head_closed_after_s'])}, "
        f"bodies {details['body_statuses']} after {describe_spread(details['body_closed_after_s'])}"
        f"; {details['left_open']} left open; /healthz slowest {in_seconds(slowest)}"
    )


def opening_s(connections):
    """Seconds from the first connection opened to the last one holding."""
    held_at = [held.held_at for held in connections if held.held_at is not None]
    if not held_at:
        return None
    return max(held_at) - min(held.opened_at for held in connections)


def check_held(row, connections, probes):
    details = row.details
    row.check(
        f"/healthz keeps answering within {STALL_S:g} s",
        probes and not details["healthz_stalled"],
        f"{details['healthz_stalled']} of {len(probes)} stalled, "
        f"the slowest in {in_seconds(details['healthz_slowest_s'])}",
    )
    row.check(
        "every connection accepted and answered its first request",
        not details["never_held"],
        f"never held: {details['never_held'] or 'none'}",
    )
    longest = BOUND_S + MARGIN_S
    row.check(
        f"every held head closed within {longest:g} s",
        all(
            held.closed_after_s is not None and held.closed_after_s <= longest
            for held in connections
            if held.kind == "head"
        ),
        f"after {describe_spread(details['head_closed_after_s'])}, {details['left_open']} open",
    )
    # A 503: gevent shed the connection (beyond its capacity) before the body. nginx closes
    # a body that stalls without an answer (its access log says 408).
    answers = (408, 503) if row.via == "direct" else (408, None)
    row.check(
        f"every held body answered {' or '.join(map(str, answers))} "
        f"and closed within {longest:g} s",
        all(
            held.status in answers
            and held.closed_after_s is not None
            and held.closed_after_s <= longest
            for held in connections
            if held.kind == "body"
        ),
        f"{details['body_statuses']} after {describe_spread(details['body_closed_after_s'])}",
    )


def spread(values):
    """{min, median, max} of the values that are not None, and how many are None."""
    known = sorted(value for value in values if value is not None)
    if not known:
        return {"min": None, "median": None, "max": None, "unknown": len(values)}
    return {
        "min": known[0],
        "median": statistics.median(known),
        "max": known[-1],
        "unknown": len(values) - len(known),
    }


def describe_spread(values):
    if values["max"] is None:
        return "-"
    return f"{values['min']:.1f} to {values['max']:.1f} s (median {values['median']:.1f})"
