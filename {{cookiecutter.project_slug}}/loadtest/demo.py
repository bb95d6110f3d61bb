"""The demo scenarios: one per bottleneck a worker model has to cope with, and a blend.

The paths are the project's demo endpoints (DJANGO_DEMO_ENDPOINTS), each of a
known cost: 50 ms waiting like an upstream call (in a sync view, or in an async
one), 50 ms waiting inside PostgreSQL, about 10 ms of pure-Python CPU, and a real
call to an upstream that waits 50 ms, followed by about 1 ms of CPU on its answer.
"""

from dataclasses import replace
from pathlib import Path

from loadtest.scenarios import Request, Scenario

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

IO = Request("io", "/demo/io?ms=50", 1, wait_ms=50, calibration_path="/demo/io?ms=0")
IO_ASYNC = Request(
    "io-async", "/demo/io-async?ms=50", 1, wait_ms=50, calibration_path="/demo/io-async?ms=0"
)
DB = Request(
    "db", "/demo/db?ms=50", 1, wait_ms=50, calibration_path="/demo/db?ms=0", uses_database=True
)
CPU = Request("cpu", "/demo/cpu", 1, wait_ms=0, calibration_path="/demo/cpu")
# Calibrated with the call made (ms=0): its CPU cost, the client's and the answer's, counts.
UPSTREAM = Request(
    "upstream",
    "/demo/upstream?ms=50",
    1,
    wait_ms=50,
    calibration_path="/demo/upstream?ms=0",
    uses_upstream=True,
)

DEMO_SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "io",
            "/demo/io?ms=50: waits like a slow upstream",
            LOCUSTFILE,
            "IoUser",
            "IoArrivals",
            (IO,),
        ),
        Scenario(
            "io-async",
            "/demo/io-async?ms=50: the same wait in an async view (asyncio.sleep)",
            LOCUSTFILE,
            "IoAsyncUser",
            "IoAsyncArrivals",
            (IO_ASYNC,),
        ),
        Scenario(
            "db",
            "/demo/db?ms=50: waits inside PostgreSQL",
            LOCUSTFILE,
            "DbUser",
            "DbArrivals",
            (DB,),
        ),
        Scenario(
            "cpu",
            "/demo/cpu: about 10 ms of Python CPU",
            LOCUSTFILE,
            "CpuUser",
            "CpuArrivals",
            (CPU,),
        ),
        Scenario(
            "upstream",
            "/demo/upstream?ms=50: a real HTTP call to a service that waits 50 ms, then "
            "about 1 ms of CPU",
            LOCUSTFILE,
            "UpstreamUser",
            "UpstreamArrivals",
            (UPSTREAM,),
        ),
        # A service that mostly waits, on upstreams more than on its database, and
        # computes a little: the shape of most Django services.
        Scenario(
            "mixed",
            "70 % io, 20 % db, 10 % cpu",
            LOCUSTFILE,
            "MixedUser",
            "MixedArrivals",
            (replace(IO, weight=7), replace(DB, weight=2), replace(CPU, weight=1)),
        ),
    )
}
