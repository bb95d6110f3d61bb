"""large-body: a POST declares a body of 50 MB and sends only the first 64 KiB of it.

The presets refuse a declared Content-Length over GUNICORN_MAX_REQUEST_BODY
(10 MiB by default) with a 413 before reading the body, and close the
connection: a server that reads it first spends the bandwidth, and the disk
Django spools it to, on a request it refuses anyway. The row says how long the
413 took and how many bytes the client had to send.
"""

from ..hostile_clients import post_large_body
from ..report import Row
from .context import serving

PATH = "/demo/io"
DECLARED_BYTES = 50 * 1000 * 1000
EARLY_BYTES = 64 * 1024  # all of the body sent before waiting for the answer


def large_body(preset, context):
    row = Row("large-body", preset)
    # Empty means the default limit, whatever the shell running the session says.
    environment = {"GUNICORN_MAX_REQUEST_BODY": ""}
    with serving(preset, context, "large-body", extra_env=environment) as (server, _):
        outcome = post_large_body(server.port, PATH, DECLARED_BYTES, EARLY_BYTES)
    row.count([outcome])
    row.details.update(
        declared_bytes=DECLARED_BYTES,
        status=outcome.status,
        error=outcome.error,
        seconds=outcome.seconds,
        bytes_sent=outcome.bytes_sent,
        answered_before_body=outcome.answered_before_body,
        closed_after_answer=outcome.closed_after_answer,
    )
    answer = (
        f"{outcome.status} after {outcome.seconds:.2f} s"
        if outcome.status
        else f"no answer ({outcome.error})"
    )
    row.notes.append(f"{answer}, {outcome.bytes_sent:,} bytes sent")
    row.check(
        "413 before the body is read",
        outcome.status == 413 and outcome.answered_before_body,
        f"{answer}, {outcome.bytes_sent:,} bytes sent",
    )
    row.check(
        "the connection closed after the 413",
        outcome.closed_after_answer,
        "closed" if outcome.closed_after_answer else "not closed",
    )
    return [row]
