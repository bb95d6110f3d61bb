"""Boot every preset and call each endpoint once: a quick "does it all run here?".

Usage: python -m loadtest.smoke  (nox -s smoke). Against DATABASE_URL; without it,
against the PostgreSQL devdb.py finds or brings (SQLite if none), said in the first line.
"""

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import devdb

from .server import PRESETS, ServerError, running_server

PATHS = (
    "/healthz",
    "/readyz",
    "/demo/io?ms=50",
    "/demo/io-async?ms=50",
    "/demo/db?ms=50",
    "/demo/cpu",
    "/demo/upstream?ms=50",
)
# What /demo/upstream calls, as in the load test.
UPSTREAM_PRESET = "gevent"


def call(url):
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError) as exc:
        return f"error: {exc}", 0.0
    return status, (time.perf_counter() - started) * 1000


def main():
    with devdb.database() as database:
        print(database.note, flush=True)
        failures = smoke()
    if failures:
        sys.exit(f"{failures} call(s) did not answer 200: see loadtest-results/smoke-*.log")


def smoke():
    output = Path("loadtest-results")
    output.mkdir(exist_ok=True)
    failures = 0
    print(f"{'preset':<8} {'path':<22} {'status':>6} {'ms':>8}")
    with running_server(UPSTREAM_PRESET, output / "smoke-upstream.log") as upstream:
        upstream_env = {"DJANGO_DEMO_UPSTREAM_URL": upstream.url}
        for preset in PRESETS:
            try:
                log = output / f"smoke-{preset}.log"
                with running_server(preset, log, extra_env=upstream_env) as server:
                    for path in PATHS:
                        status, elapsed_ms = call(server.url + path)
                        failures += status != 200
                        print(f"{preset:<8} {path:<22} {status!s:>6} {elapsed_ms:8.1f}", flush=True)
            except ServerError as exc:
                failures += 1
                print(f"{preset:<8} did not start: {exc}", flush=True)
    return failures


if __name__ == "__main__":
    main()
