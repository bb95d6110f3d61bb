"""The demo scenarios: one per bottleneck a worker model has to cope with, and a blend.

The paths are the project's demo endpoints (DJANGO_DEMO_ENDPOINTS), each of a
known cost: 50 ms waiting like an upstream call, 50 ms waiting inside
PostgreSQL, about 10 ms of pure-Python CPU.
"""

from dataclasses import replace
from pathlib import Path

from loadtest.scenarios import Request, Scenario

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

IO = Request("io", "/demo/io?ms=50", 1, wait_ms=50, calibration_path="/demo/io?ms=0")
DB = Request(
    "db", "/demo/db?ms=50", 1, wait_ms=50, calibration_path="/demo/db?ms=0", uses_database=True
)
CPU = Request("cpu", "/demo/cpu", 1, wait_ms=0, calibration_path="/demo/cpu")

DEMO_SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("io", "/demo/io?ms=50: waits like a slow upstream", LOCUSTFILE, "IoUser", (IO,)),
        Scenario("db", "/demo/db?ms=50: waits inside PostgreSQL", LOCUSTFILE, "DbUser", (DB,)),
        Scenario("cpu", "/demo/cpu: about 10 ms of Python CPU", LOCUSTFILE, "CpuUser", (CPU,)),
        # A service that mostly waits, on upstreams more than on its database, and
        # computes a little: the shape of most Django services.
        Scenario(
            "mixed",
            "70 % io, 20 % db, 10 % cpu",
            LOCUSTFILE,
            "MixedUser",
            (replace(IO, weight=7), replace(DB, weight=2), replace(CPU, weight=1)),
        ),
    )
}
