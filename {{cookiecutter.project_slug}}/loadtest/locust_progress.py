"""A Locust plugin the load test adds to every run: live progress, written to a file.

Loaded as a second Locust file (`-f your_file.py,loadtest/locust_progress.py`);
it defines no users. Each second the master (or the only process) writes the
runner's state and counters as JSON to $LOADTEST_PROGRESS_FILE, which the
session reads for its live display and to sample the server only while every
user runs.
"""

import json
import os
from pathlib import Path

import gevent
from locust import events
from locust.runners import WorkerRunner

INTERVAL_S = 0.5


@events.init.add_listener
def report_progress(environment, **_kwargs):
    path = os.environ.get("LOADTEST_PROGRESS_FILE")
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    path = Path(path)
    partial = path.with_suffix(".partial")

    def write_forever():
        while True:
            total = environment.stats.total
            partial.write_text(
                json.dumps(
                    {
                        "state": environment.runner.state,
                        "users": environment.runner.user_count,
                        "requests": total.num_requests,
                        "failures": total.num_failures,
                    }
                )
            )
            partial.replace(path)  # readers never see half a file
            gevent.sleep(INTERVAL_S)

    gevent.spawn(write_forever)
