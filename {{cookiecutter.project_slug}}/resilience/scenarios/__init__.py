"""The failure scenarios, one module each: what it breaks, how, and what it expects.

Each is a function of a preset and the session's Context that starts its own
server (so that no scenario inherits another's damage) and returns its rows
(report.py). Every wait is bounded: a scenario that finds a server hung says
so and the session moves on.
"""

from .boot_stop import boot_stop
from .busy_liveness import busy_liveness
from .chunked_flood import chunked_flood
from .db_outage import db_outage
from .drain import drain
from .held_connections import held_connections
from .hung_request import hung_request
from .large_body import large_body
from .recycle import recycle
from .slow_body import slow_body_clients
from .slowloris import slowloris
from .worker_crash import worker_crash

SCENARIOS = {
    "drain": drain,
    "worker-crash": worker_crash,
    "hung-request": hung_request,
    "db-outage": db_outage,
    "slowloris": slowloris,
    "large-body": large_body,
    "chunked-flood": chunked_flood,
    "held-connections": held_connections,
    "slow-body": slow_body_clients,
    "busy-liveness": busy_liveness,
    "boot-stop": boot_stop,
    "recycle": recycle,
}
