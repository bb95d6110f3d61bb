"""db-outage: the database goes away for 5 s under load, then comes back.

The server reaches PostgreSQL through the session's proxy (proxy.py), which
drops every connection and refuses new ones for OUTAGE_S. Meanwhile:

- requests that need the database must get a 503 (the service's "try again"),
  never a 500 (a bug) and never a hang: each is answered within
  UNAVAILABLE_WITHIN_S, a 200 allowed only from the database once it is back;
- /readyz must say 503 just as quickly, for the load balancer to route
  elsewhere;
- once the proxy listens again, the first 200 comes within RECOVERED_WITHIN_S,
  and no error follows it: a connection broken by the outage and kept (by a
  worker, a thread, a pool) would fail a request after the recovery.

Whatever the driver (psycopg or psycopg2): the proxy only moves bytes.
"""

import time

from ..clients import Load
from ..proxy import DatabaseProxy, through_proxy, upstream_of
from ..report import Row, in_seconds
from .context import serving

CLIENTS = 10
PATH = "/demo/db?ms=50"
READYZ_INTERVAL_S = 0.25
OUTAGE_S = 5.0
# A readiness probe slower than this is taken for a hung instance; a client has given up.
UNAVAILABLE_WITHIN_S = 3.0
RECOVERED_WITHIN_S = 5.0


def db_outage(preset, context):
    row = Row("db-outage", preset)
    if context.database_url is None:
        row.skipped = "no PostgreSQL: SQLite has no server to take away"
        return [row]
    with DatabaseProxy(*upstream_of(context.database_url)) as proxy:
        environment = {"DATABASE_URL": through_proxy(context.database_url, proxy.port)}
        with (
            serving(preset, context, "db-outage", extra_env=environment) as (server, _),
            Load(server.port, PATH, CLIENTS) as load,
            Load(server.port, "/readyz", 1, interval_s=READYZ_INTERVAL_S) as readiness,
        ):
            time.sleep(context.duration(2.0, 1.0))
            cut = time.monotonic()
            proxy.cut()
            time.sleep(OUTAGE_S)
            restored = time.monotonic()
            proxy.restore()
            wait_for_recovery(load.outcomes, restored, then_s=context.duration(5.0, 2.0))
    row.count(load.outcomes + readiness.outcomes)
    judge(row, load.outcomes, readiness.outcomes, cut, restored)
    return [row]


def wait_for_recovery(outcomes, restored, then_s):
    """Until `then_s` after the first 200 since `restored`, to see any error that follows
    it; RECOVERED_WITHIN_S + `then_s` at most."""
    deadline = restored + RECOVERED_WITHIN_S + then_s
    while time.monotonic() < deadline:
        recovered = first_200_after(list(outcomes), restored)
        if recovered is not None:
            deadline = min(deadline, recovered + then_s)
        time.sleep(0.1)


def judge(row, requests, probes, cut, restored):
    everything = requests + probes
    recovered = first_200_after(requests, restored)
    row.recovery_s = None if recovered is None else recovered - restored
    after = (
        []
        if recovered is None
        else [outcome for outcome in everything if outcome.started >= recovered]
    )
    before = [outcome for outcome in everything if outcome.ended < cut]
    during = {
        "/demo/db": answers_during(requests, cut, restored),
        "/readyz": answers_during(probes, cut, restored),
    }
    row.details.update(
        clients=CLIENTS,
        outage_s=OUTAGE_S,
        during=during,
        recovery_s=row.recovery_s,
        errors_after_recovery=sum(1 for outcome in after if outcome.status != 200),
    )
    row.notes.append(
        "during: "
        + ", ".join(
            f"{path} {answers['statuses'] or 'no answer'} in {in_seconds(answers['slowest_s'])}"
            for path, answers in during.items()
        )
    )
    row.check(
        "every request answered 200 before the cut",
        all(outcome.status == 200 for outcome in before),
        f"{sum(1 for outcome in before if outcome.status != 200)} did not",
    )
    for path, answers in during.items():
        row.check(
            f"{path} answers 503 within {UNAVAILABLE_WITHIN_S:g} s during the outage "
            "(200 only once the database is back)",
            503 in answers["statuses"]
            and set(answers["statuses"]) <= {200, 503}
            and answers["unanswered"] == answers["early_200"] == 0
            and answers["slowest_s"] <= UNAVAILABLE_WITHIN_S,
            f"{answers['statuses']}, {answers['unanswered']} unanswered, "
            f"{answers['early_200']} 200 before the return, "
            f"the slowest in {in_seconds(answers['slowest_s'])}",
        )
    row.check(
        f"a 200 within {RECOVERED_WITHIN_S:g} s of the database's return",
        row.recovery_s is not None and row.recovery_s <= RECOVERED_WITHIN_S,
        "none" if row.recovery_s is None else f"after {row.recovery_s:.2f} s",
    )
    row.check(
        "no error once recovered (no stale connection)",
        recovered is not None and row.details["errors_after_recovery"] == 0,
        f"{row.details['errors_after_recovery']} error(s) after the first 200",
    )
    row.check("nothing lost", row.lost == 0, f"{row.lost} lost")


def answers_during(outcomes, cut, restored):
    """How the requests sent while the database was away were answered, and how fast."""
    during = [outcome for outcome in outcomes if cut <= outcome.started < restored]
    return {
        "sent": len(during),
        "statuses": sorted({outcome.status for outcome in during if outcome.status}),
        "unanswered": sum(1 for outcome in during if outcome.status is None),
        # Answered 200 before the database came back: the outage did not reach it.
        "early_200": sum(
            1 for outcome in during if outcome.status == 200 and outcome.ended < restored
        ),
        "slowest_s": max((outcome.seconds for outcome in during), default=None),
    }


def first_200_after(outcomes, moment):
    """When the first request sent after `moment` was answered 200; None if none was."""
    return min(
        (
            outcome.ended
            for outcome in outcomes
            if outcome.started >= moment and outcome.status == 200
        ),
        default=None,
    )
