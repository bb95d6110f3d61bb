"""slowloris: 30 clients send their request heads one byte a second; /healthz meanwhile.

Each slow connection holds whatever serves it. sync and gthread are built to
run behind a buffering proxy, which reads whole requests before passing them
on: on their own they stall. That is reported, as failed "needs the proxy",
not judged; they must serve again once the slow clients go. gevent and asgi,
also run on their own, must keep answering /healthz, and close each slow
connection once its head has taken HEAD_TIMEOUT_S.

With nginx on PATH, the same again through the project's front
(deploy/nginx/, nginx.py): there no preset may stall.
"""

import time

from .. import nginx
from ..clients import REQUEST_TIMEOUT_S, Load, get
from ..hostile_clients import SlowClients
from ..report import Row, in_seconds
from .context import serving

CONNECTIONS = 30
HEAD_TIMEOUT_S = 10.0  # what gevent and asgi allow a first request head
HEAD_TIMEOUT_MARGIN_S = 2.0  # the worker's timer, the scheduler, this client's polling
HEALTHZ_INTERVAL_S = 0.5
HEALTHZ_TIMEOUT_S = 2.0
STALL_S = 1.0  # a /healthz slower than this: the server stalled
NEEDS_PROXY = ("sync", "gthread")


def slowloris(preset, context):
    rows = []
    with serving(preset, context, "slowloris") as (server, _):
        rows.append(slow_clients_against(server.port, Row("slowloris", preset), context))
        rows.append(
            nginx.row_through_nginx(
                "slowloris",
                preset,
                server,
                context,
                lambda port, row: slow_clients_against(port, row, context),
            )
        )
    return rows


def slow_clients_against(port, row, context):
    alone = row.via == "direct"
    needs_proxy = alone and row.preset in NEEDS_PROXY
    must_close = alone and not needs_proxy
    longest_s = HEAD_TIMEOUT_S + HEAD_TIMEOUT_MARGIN_S + 1
    with SlowClients(port, CONNECTIONS) as slow:
        time.sleep(0.5)  # the server takes them on
        started = time.monotonic()
        with Load(port, "/healthz", 1, HEALTHZ_INTERVAL_S, HEALTHZ_TIMEOUT_S) as probe:
            if must_close:
                slow.wait_until_all_closed(timeout=longest_s)
            else:
                time.sleep(context.duration(longest_s, 3.0))
        seconds = time.monotonic() - started
        closed = sorted(slow.closed_after_s)
    # Once they are gone: does the server serve again, and how soon.
    answer = get(port, "/healthz", timeout=REQUEST_TIMEOUT_S)
    outcomes = probe.outcomes
    row.count(outcomes, unanswered_is_failure=needs_proxy)
    stalled = [
        outcome for outcome in outcomes if outcome.status != 200 or outcome.seconds > STALL_S
    ]
    slowest = max((outcome.seconds for outcome in outcomes), default=None)
    if stalled and answer.status == 200:
        row.recovery_s = answer.seconds
    row.details.update(
        slow_connections=CONNECTIONS,
        refused=slow.refused,
        closed_by_server=len(closed),
        closed_after_s=closed,
        healthz_stalled=len(stalled),
        healthz_slowest_s=slowest,
        seconds=seconds,
    )
    row.notes.append(describe_closed(closed, seconds))
    if needs_proxy:
        row.notes.append(
            f"/healthz stalled {len(stalled)} of {len(outcomes)} times: needs the proxy"
            if stalled
            else "/healthz did not stall"
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
        outcomes and not stalled,
        f"{len(stalled)} of {len(outcomes)} stalled, the slowest in {in_seconds(slowest)}",
    )
    if must_close:
        row.check(
            f"every slow connection closed after the {HEAD_TIMEOUT_S:g} s head timeout",
            len(closed) == CONNECTIONS - slow.refused
            and all(
                HEAD_TIMEOUT_S - 1 <= after <= HEAD_TIMEOUT_S + HEAD_TIMEOUT_MARGIN_S
                for after in closed
            ),
            describe_closed(closed, seconds),
        )
    return row


def describe_closed(closed, seconds):
    if not closed:
        return f"none of {CONNECTIONS} slow connections closed in {seconds:.0f} s"
    return (
        f"{len(closed)} of {CONNECTIONS} slow connections closed "
        f"after {closed[0]:.1f} to {closed[-1]:.1f} s"
    )
