"""chunked-flood: POSTs with `Transfer-Encoding: chunked`, 64 KiB chunks up to 50 MB each.

No Content-Length to refuse up front: the presets count a chunked body as it
comes and answer 413 once it passes GUNICORN_MAX_REQUEST_BODY (10 MiB by
default), then stop reading and close the connection (limits.py). The client
stops sending once it reads the answer, as a client told no mid-body does:
what it sent by then is what the server let in, the limit plus what the socket
buffers of both ends hold (13.4 to 15.9 MB measured here, over 10.5 MB
allowed). The body spooled past 1 MiB goes to a temporary file, in a TMPDIR of
the row's own, watched while the floods run: it must never hold more than the
limit, nor anything after. /healthz is probed throughout.

With nginx on PATH, the same again through the project's front, whose
client_max_body_size (10m) answers the 413 itself.
"""

import os
import threading
import time
from pathlib import Path

from .. import nginx
from ..clients import Load
from ..hostile_clients import post_chunked_flood
from ..report import Row, in_seconds
from .context import serving

PATH = "/healthz"
CHUNK_BYTES = 64 * 1024
FLOOD_BYTES = 50 * 1000 * 1000
MAX_REQUEST_BODY = 10 * 1024 * 1024  # the presets' default, and nginx's client_max_body_size
# Past the limit, what the client may still have written: the loopback socket buffers of
# both ends (3 to 5.4 MB measured), with room for the kernel to size them otherwise.
BUFFERS_BYTES = 8 * 1024 * 1024
HEALTHZ_INTERVAL_S = 0.5
HEALTHZ_TIMEOUT_S = 2.0
STALL_S = 1.0


def chunked_flood(preset, context):
    tmpdir = context.results / f"tmp-chunked-flood-{preset}"
    tmpdir.mkdir()
    # Empty means the default limit, whatever the shell running the session says.
    environment = {"GUNICORN_MAX_REQUEST_BODY": "", "TMPDIR": str(tmpdir)}
    rows = []
    with serving(preset, context, "chunked-flood", extra_env=environment) as (server, master):
        row = Row("chunked-flood", preset)
        with TempFileWatch(master, tmpdir) as temp_files:
            rows.append(flood(server.port, row, context))
        row.details.update(
            tmpdir_peak_bytes=temp_files.peak_bytes,
            tmpdir_left=sorted(path.name for path in tmpdir.iterdir()),
        )
        row.check(
            "the temporary file never holds more than the limit, and is gone after",
            temp_files.peak_bytes <= MAX_REQUEST_BODY and not row.details["tmpdir_left"],
            f"peak {temp_files.peak_bytes:,} bytes, {len(row.details['tmpdir_left'])} file(s) left",
        )
        rows.append(
            nginx.row_through_nginx(
                "chunked-flood",
                preset,
                server,
                context,
                lambda port, row: flood(port, row, context),
            )
        )
    return rows


def flood(port, row, context):
    floods = context.duration(5, 3)
    with Load(port, PATH, 1, HEALTHZ_INTERVAL_S, HEALTHZ_TIMEOUT_S) as probe:
        outcomes = []
        for _ in range(floods):
            outcomes.append(post_chunked_flood(port, PATH, CHUNK_BYTES, FLOOD_BYTES))
            time.sleep(HEALTHZ_INTERVAL_S)  # a probe between two floods
    row.count(outcomes)
    row.count(probe.outcomes)
    most = max(outcome.bytes_sent for outcome in outcomes)
    slowest = max(outcome.seconds for outcome in outcomes)
    statuses = sorted({outcome.status or outcome.error for outcome in outcomes}, key=str)
    closes = sorted({outcome.closed for outcome in outcomes})
    stalled = [
        outcome for outcome in probe.outcomes if outcome.status != 200 or outcome.seconds > STALL_S
    ]
    row.details.update(
        floods=floods,
        flood_bytes=FLOOD_BYTES,
        statuses=statuses,
        bytes_sent=[outcome.bytes_sent for outcome in outcomes],
        seconds=[outcome.seconds for outcome in outcomes],
        closed=[outcome.closed for outcome in outcomes],
        healthz_stalled=len(stalled),
    )
    row.notes.append(
        f"{floods} floods: {statuses} after {in_seconds(slowest)} at most, "
        f"{most:,} bytes sent at most; then {', '.join(closes)}"
    )
    row.check(
        f"413 once past {MAX_REQUEST_BODY:,} bytes, with at most "
        f"{BUFFERS_BYTES // (1024 * 1024)} MiB in socket buffers sent beyond",
        all(outcome.status == 413 for outcome in outcomes)
        and most <= MAX_REQUEST_BODY + BUFFERS_BYTES,
        f"{statuses}, up to {most:,} bytes sent",
    )
    row.check(
        "the connection closed after the answer was read (an end of file, or a reset after it)",
        all(outcome.closed in ("end of file", "reset") for outcome in outcomes),
        ", ".join(closes),
    )
    row.check(
        f"/healthz keeps answering within {STALL_S:g} s",
        probe.outcomes and not stalled,
        f"{len(stalled)} of {len(probe.outcomes)} stalled",
    )
    return row


class TempFileWatch:
    """The most the workers' open files in `tmpdir` hold at once, sampled every 10 ms.

    A spooled body's file is unlinked at creation: only the workers' open descriptors
    (/proc/PID/fd) still see it.
    """

    def __init__(self, master, tmpdir):
        self.master, self.tmpdir = master, str(tmpdir)
        self.peak_bytes = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="tmpdir")

    def _watch(self):
        while not self._stopping.wait(0.01):
            self.peak_bytes = max(self.peak_bytes, self.held_bytes())

    def held_bytes(self):
        held = 0
        for worker in self.master.children():
            folder = Path(f"/proc/{worker.pid}/fd")
            try:
                descriptors = list(folder.iterdir())
            except OSError:
                continue  # gone, or not Linux
            for descriptor in descriptors:
                try:
                    if os.readlink(descriptor).startswith(self.tmpdir):
                        held += descriptor.stat().st_size
                except OSError:
                    continue  # closed meanwhile
        return held

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stopping.set()
        self._thread.join()
