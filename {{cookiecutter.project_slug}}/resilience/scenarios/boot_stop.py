"""boot-stop: 20 starts of the preset, each stopped (SIGTERM) while the master forks its workers.

A deploy or a scale-down right after a start, or a test stopping what it just
started: a worker forked as the signal came used to miss it, and the master
waited its whole 25 s graceful timeout (workers/lifecycle.py). Each start here
is sent SIGTERM 0 to 300 ms (a seeded random delay: the seed is in the row)
after its port first accepts a connection, which the master binds before it
forks. Each master must exit within 5 s, and no process of its own may outlive
it by 3 s (its metrics server checks every second that the master lives).

nginx plays no part in a start or a stop: its row says so.
"""

import os
import random
import signal
import socket
import statistics
import subprocess
import time
from collections import Counter

import psutil

from loadtest import processes
from loadtest.server import PROJECT_DIR, command, environment, free_port

from ..clients import HOST
from ..report import Row
from .context import BOOT_TIMEOUT_S

STARTS = 20
QUICK_STARTS = 10
SEED = 20_251_203
LATEST_SIGNAL_S = 0.3
EXIT_WITHIN_S = 5.0
LINGER_S = 3.0
NO_NGINX = "nginx plays no part in a master's start and stop"


def boot_stop(preset, context):
    row = Row("boot-stop", preset)
    rng = random.Random(SEED)
    starts = context.duration(STARTS, QUICK_STARTS)
    stops = [
        start_and_stop(preset, context, rng.uniform(0, LATEST_SIGNAL_S), number)
        for number in range(starts)
    ]
    times = [stop["exit_s"] for stop in stops if stop["exit_s"] is not None]
    codes = Counter(str(stop["returncode"]) for stop in stops)
    left = sum(stop["left_behind"] for stop in stops)
    late = [stop for stop in stops if stop["exit_s"] is None or stop["exit_s"] > EXIT_WITHIN_S]
    row.details.update(
        seed=SEED,
        starts=starts,
        delays_s=[stop["delay_s"] for stop in stops],
        exit_s=[stop["exit_s"] for stop in stops],
        exit_max_s=max(times, default=None),
        exit_median_s=statistics.median(times) if times else None,
        returncodes=dict(codes),
        left_behind=left,
    )
    details = row.details
    summary = (
        f"{starts} starts (seed {SEED}): exit in {details['exit_median_s']:.2f} s median, "
        f"{details['exit_max_s']:.2f} s at most; exit codes {dict(codes)}"
        if times
        else f"{starts} starts: none exited"
    )
    row.notes.append(summary)
    row.check(
        f"every master exits within {EXIT_WITHIN_S:g} s of its SIGTERM, leaving no process",
        not late and not left,
        f"{len(late)} late; {left} process(es) left behind; {summary}",
    )
    return [row, Row("boot-stop", preset, via="nginx", skipped=NO_NGINX)]


def start_and_stop(preset, context, delay_s, number):
    port = free_port()
    log = context.log("boot-stop", preset).with_name(f"boot-stop-{preset}-{number}.log")
    with open(log, "w") as output:
        process = processes.start(
            command(preset, port),
            env=environment(preset, port, metrics_port=free_port()),
            cwd=PROJECT_DIR,
            stdout=output,
        )
        try:
            wait_for_port(port, process)
            time.sleep(delay_s)
            group = os.getpgid(process.pid)
            os.kill(process.pid, signal.SIGTERM)
            signalled = time.monotonic()
            try:
                returncode = process.wait(timeout=EXIT_WITHIN_S + 10)
                exit_s = time.monotonic() - signalled
            except subprocess.TimeoutExpired:
                returncode = exit_s = None
            left_behind = wait_for_group(group)
        finally:
            processes.stop(process, grace=1.0)  # whatever is left of the group
    return {
        "delay_s": delay_s,
        "exit_s": exit_s,
        "returncode": returncode,
        "left_behind": left_behind,
    }


def wait_for_group(group):
    """The processes of `group` still running after LINGER_S: the metrics server, which
    checks every second that the master lives, and exits within LINGER_S of it."""
    deadline = time.monotonic() + LINGER_S
    while True:
        left = sum(1 for other in psutil.process_iter() if in_group(other, group))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def in_group(process, group):
    try:
        return os.getpgid(process.pid) == group
    except (ProcessLookupError, psutil.Error):
        return False


def wait_for_port(port, process):
    """Until the master's socket accepts a connection (it binds before it forks)."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S * 3
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=0.1):
                return
        except OSError:
            time.sleep(0.005)
