"""Liveness from the master's watch over its workers, which a saturated pool does not delay.

A probe on the service's port waits in the same queue as every request: under
`wrk -c500` on /demo/io?ms=50 the sync preset timed out 2 of 24 /healthz probes at
5 s, and an orchestrator restarts busy, healthy pods. Instead, each worker's
heartbeat (gunicorn's: a file it touches every second or between requests, which
the master reads on every turn of its loop to kill a worker silent for `timeout`)
is what liveness reads: `Watched` sits between the master and a worker's
heartbeat file, and each time the master reads one it records, in the instance's
`liveness` file, when it read it and the newest beat of any worker.

/livez (server.py) then fails when:
- the master has not read a heartbeat for MASTER_STALL_S (its loop turns every
  second): the master is stuck, and no worker would ever be replaced;
- no worker has beaten for `timeout`: every worker is stuck (the master is about to
  kill them all).
A worker busy with requests still beats (sync between requests, the others from
their main loop or event loop), so a saturated instance stays alive.
"""

import os
import struct
import time
from pathlib import Path

FILE_NAME = "liveness"
RECORD = struct.Struct("ddq")  # master read at, newest heartbeat, workers: monotonic seconds
MASTER_STALL_S = 10.0


class Watched:
    """A worker's heartbeat file (gunicorn's WorkerTmp), as its worker and the master use it.

    In the worker, notify() beats, and gives the worker's metrics their heartbeat. In
    the master, last_update() is the master's loop reading the beat: recorded.
    """

    def __init__(self, tmp, record, heartbeat=None):
        self.tmp = tmp
        self.record = record  # master side: Record
        self.heartbeat = heartbeat  # worker side: called on each beat

    def notify(self):
        self.tmp.notify()
        if self.heartbeat is not None:
            self.heartbeat()

    def last_update(self):
        beat = self.tmp.last_update()
        self.record.read(self, beat)
        return beat

    def fileno(self):
        return self.tmp.fileno()

    def close(self):
        return self.tmp.close()


class Record:
    """The master's side: the `liveness` file in the instance's directory."""

    def __init__(self, directory, arbiter):
        self.arbiter = arbiter
        self.beats = {}  # Watched: its newest beat
        self.fd = os.open(Path(directory) / FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(self.fd, RECORD.pack(0.0, 0.0, 0), 0)

    def read(self, watched, beat):
        # A new worker's file carries its creation's wall-clock time until its first beat
        # (gunicorn's beats are monotonic): count it as a beat now.
        self.beats[watched] = min(beat, time.monotonic())
        workers = {worker.tmp for worker in self.arbiter.WORKERS.values()}
        for gone in self.beats.keys() - workers:
            del self.beats[gone]
        newest = max(self.beats.values(), default=0.0)
        os.pwrite(self.fd, RECORD.pack(time.monotonic(), newest, len(workers)), 0)


def verdict(directory, timeout, now=None):
    """(alive, one line saying why), from the `liveness` file the master keeps."""
    now = time.monotonic() if now is None else now
    try:
        with open(Path(directory) / FILE_NAME, "rb") as file:
            read_at, newest, workers = RECORD.unpack(file.read(RECORD.size))
    except (OSError, struct.error):
        return False, "the master has not recorded its workers yet"
    if not read_at:
        return False, "the master has not read a worker's heartbeat yet"
    master_age, beat_age = now - read_at, now - newest
    if master_age > MASTER_STALL_S:
        return False, f"the master's loop has not turned for {master_age:.1f} s"
    if not workers or beat_age > timeout:
        return False, f"no worker has reported for {beat_age:.1f} s (timeout {timeout} s)"
    return True, (
        f"{workers} workers; newest heartbeat {beat_age:.1f} s ago, "
        f"read by the master {master_age:.1f} s ago"
    )


def ages(directory, now=None):
    """(seconds since the master read a heartbeat, since the newest beat, workers), or None."""
    now = time.monotonic() if now is None else now
    try:
        with open(Path(directory) / FILE_NAME, "rb") as file:
            read_at, newest, workers = RECORD.unpack(file.read(RECORD.size))
    except (OSError, struct.error):
        return None
    if not read_at:
        return None
    return now - read_at, now - newest, workers
