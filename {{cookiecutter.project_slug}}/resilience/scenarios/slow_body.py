"""slow-body: 30 clients declare a 1 MB body and send it a byte a second; /healthz meanwhile.

A byte a second never stalls for the 10 s limits.py allows between two bytes;
what ends it is the average: a body must come at 32 KiB/s past those 10 s, so
a 1 MB one gets 10 + 1 + 30.5 s (body_deadline), then a 408, one line in the
log, and the connection closed. gevent and asgi must answer so, and keep
answering /healthz. --quick declares 100 kB (a 14 s deadline).

sync and gthread give each slow body a worker or a thread (30 outnumber sync's
5 workers and gthread's 24 threads): on their own they stall ("needs the
proxy"). sync enforces the 10 s stall only, and its master kills a worker that
reads a body longer than GUNICORN_TIMEOUT (30 s): that is in the row as seen
(WORKER TIMEOUT, 500s), not excused. Through nginx, which waits for bodies in
its event loop, no preset may stall; nginx keeps a trickling body as long as
bytes come (client_body_timeout is between two of them), so gunicorn never sees
one.
"""

import re
import time
from collections import Counter

from .. import nginx
from ..clients import Load, get
from ..hostile_clients import SlowClients, slow_body
from ..report import Row, in_seconds
from .context import serving

CLIENTS = 30
DECLARED_BYTES = 1_000_000
QUICK_DECLARED_BYTES = 100_000
BODY_STALL_S = 10  # limits.py: BODY_STALL_TIMEOUT
MIN_BODY_RATE = 32 * 1024  # limits.py: bytes a second on average, past the stall
# gthread checks its deadlines once a second; the scheduler and this client's polling.
MARGIN_S = 3.0
HEALTHZ_INTERVAL_S = 0.5
HEALTHZ_TIMEOUT_S = 2.0
STALL_S = 1.0
NEEDS_PROXY = ("sync", "gthread")
REFUSAL_LINE = re.compile(r"408 Request Timeout to [^:]+: request body")
KILLED = ("WORKER TIMEOUT", "SIGKILL")


def slow_body_clients(preset, context):
    rows = []
    with serving(preset, context, "slow-body") as (server, _):
        rows.append(trickle(server, server.port, Row("slow-body", preset), context))
        rows.append(
            nginx.row_through_nginx(
                "slow-body",
                preset,
                server,
                context,
                lambda port, row: trickle(server, port, row, context),
            )
        )
    return rows


def body_deadline(declared):
    """limits.body_deadline: the longest a body of `declared` bytes may take."""
    return BODY_STALL_S + 1 + declared / MIN_BODY_RATE


def trickle(server, port, row, context):
    alone = row.via == "direct"
    needs_proxy = alone and row.preset in NEEDS_PROXY
    must_answer = alone and not needs_proxy
    declared = context.duration(DECLARED_BYTES, QUICK_DECLARED_BYTES)
    deadline_s = body_deadline(declared)
    log_before = server.log
    with SlowClients(port, CLIENTS, stream=lambda port: slow_body(port, declared)) as slow:
        time.sleep(0.5)  # the server takes them on
        started = time.monotonic()
        with Load(port, "/healthz", 1, HEALTHZ_INTERVAL_S, HEALTHZ_TIMEOUT_S) as probe:
            if must_answer:
                slow.wait_until_all_closed(timeout=deadline_s + MARGIN_S)
            else:
                time.sleep(context.duration(deadline_s + MARGIN_S, 5.0))
        seconds = time.monotonic() - started
        closed = sorted(slow.closed_after_s)
        answers = list(slow.answers)
    answer = get(port, "/healthz")
    log = server.log[len(log_before) :]
    row.count(probe.outcomes, unanswered_is_failure=needs_proxy)
    stalled = [
        outcome for outcome in probe.outcomes if outcome.status != 200 or outcome.seconds > STALL_S
    ]
    statuses = Counter(status for status, _ in answers)
    row.details.update(
        clients=CLIENTS,
        declared_bytes=declared,
        deadline_s=deadline_s,
        refused=slow.refused,
        closed_by_server=len(closed),
        closed_after_s=closed,
        statuses={str(status): count for status, count in statuses.items()},
        closed_after_answer=dict(Counter(how for _, how in answers)),
        refusal_lines=len(REFUSAL_LINE.findall(log)),
        workers_killed=sum(log.count(word) for word in KILLED),
        healthz_stalled=len(stalled),
        healthz_slowest_s=max((outcome.seconds for outcome in probe.outcomes), default=None),
        seconds=seconds,
    )
    details = row.details
    spread = f"after {closed[0]:.1f} to {closed[-1]:.1f} s" if closed else f"in {seconds:.0f} s"
    row.notes.append(
        f"{len(closed)} of {CLIENTS} slow bodies ended {spread}: {details['statuses'] or 'none'}; "
        f"{details['refusal_lines']} log lines; {details['workers_killed']} worker kills"
    )
    if needs_proxy:
        row.notes.append(
            f"/healthz stalled {len(stalled)} of {len(probe.outcomes)} times: needs the proxy"
            if stalled
            else "/healthz did not stall"
        )
    row.check(
        "no worker killed (WORKER TIMEOUT, SIGKILL), no 500",
        not details["workers_killed"] and 500 not in statuses,
        f"{details['workers_killed']} kills, statuses {details['statuses']}",
    )
    row.check(
        "/healthz answers once the slow clients are gone",
        answer.status == 200,
        f"{answer.status or answer.error} after {answer.seconds:.2f} s",
    )
    if needs_proxy:
        return row
    row.check(
        f"/healthz keeps answering within {STALL_S:g} s",
        probe.outcomes and not stalled,
        f"{len(stalled)} of {len(probe.outcomes)} stalled, "
        f"the slowest in {in_seconds(details['healthz_slowest_s'])}",
    )
    if must_answer:
        row.check(
            f"each slow body answered 408 within its {deadline_s:.1f} s (+{MARGIN_S:g}), "
            "the connection closed, one log line each",
            statuses == {408: CLIENTS}
            and all(after <= deadline_s + MARGIN_S for after in closed)
            and set(details["closed_after_answer"]) <= {"end of file", "reset"}
            and details["refusal_lines"] == CLIENTS,
            f"{details['statuses']} {spread}, then {details['closed_after_answer']}; "
            f"{details['refusal_lines']} log lines",
        )
    return row
