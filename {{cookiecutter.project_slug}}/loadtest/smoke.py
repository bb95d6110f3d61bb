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

PATHS = ("/healthz", "/readyz", "/demo/io?ms=50", "/demo/db?ms=50", "/demo/cpu")


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
    print(f"{'preset':<8} {'path':<16} {'status':>6} {'ms':>8}")
    for preset in PRESETS:
        try:
            with running_server(preset, output / f"smoke-{preset}.log") as server:
                for path in PATHS:
                    status, elapsed_ms = call(server.url + path)
                    failures += status != 200
                    print(f"{preset:<8} {path:<16} {status!s:>6} {elapsed_ms:8.1f}", flush=True)
        except ServerError as exc:
            failures += 1
            print(f"{preset:<8} did not start: {exc}", flush=True)
    return failures


if __name__ == "__main__":
    main()
