"""The load test's command-line options, checked before anything starts.

`nox -s loadtest -- --help` lists them. A bad value stops the session with one
line that names the option and says what it accepts.
"""

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

{% if cookiecutter.include_demo_endpoints -%}
from .demo import DEMO_SCENARIOS
{% endif -%}
from .server import COMPARISONS, GRANIAN, PRESETS, granian_installed

ALL_PRESETS = (*PRESETS, *COMPARISONS)
DEFAULT_USERS = (10, 100, 500)
QUICK_USERS = (100,)
DEFAULT_DURATION_S = 15.0
QUICK_DURATION_S = 5.0
# A capacity search runs several levels per preset and scenario: shorter steps.
CAPACITY_DURATION_S = 5.0
QUICK_CAPACITY_DURATION_S = 3.0
MAX_DURATION_S = 3600.0  # load tests stop by themselves
MAX_USERS = 10_000
MAX_ARRIVAL_RATE = 100_000
MAX_LOCUST_WORKERS = 64
DEFAULT_SLO_P99_MS = 500.0
DURATION = re.compile(r"(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?")
LATENCY = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)")


@dataclass(frozen=True)
class Options:
    presets: tuple[str, ...]
{%- if cookiecutter.include_demo_endpoints %}
    scenarios: tuple[str, ...]
{%- endif %}
    users: tuple[int, ...]
    duration_s: float
    quick: bool
    locustfile: Path | None
    workers: int
    slo_p99_ms: float
    capacity: bool = False
    arrival_rates: tuple[float, ...] = ()
    target_rps: float | None = None


def comma_list(allowed, what):
    def parse(raw):
        items = tuple(dict.fromkeys(item.strip() for item in raw.split(",") if item.strip()))
        unknown = [item for item in items if item not in allowed]
        if not items or unknown:
            shown = f"{', '.join(map(repr, unknown))} is not" if unknown else "no value given:"
            raise argparse.ArgumentTypeError(f"{shown} a {what}: use {','.join(allowed)}")
        return items

    return parse


def user_counts(raw):
    try:
        counts = tuple(sorted({int(item) for item in raw.split(",") if item.strip()}))
    except ValueError:
        counts = ()
    if not counts or not all(1 <= count <= MAX_USERS for count in counts):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a list of user counts: use whole numbers from 1 to {MAX_USERS}, "
            "e.g. 10,100,500"
        )
    return counts


def arrival_rates(raw):
    try:
        rates = tuple(sorted({float(item) for item in raw.split(",") if item.strip()}))
    except ValueError:
        rates = ()
    if not rates or not all(1 <= rate <= MAX_ARRIVAL_RATE for rate in rates):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a list of arrival rates: use requests per second from 1 to "
            f"{MAX_ARRIVAL_RATE}, e.g. 200,400,800"
        )
    return rates


def requests_per_second(raw):
    try:
        rate = float(raw.strip().removesuffix("/s").removesuffix("rps").strip().replace("_", ""))
    except ValueError:
        rate = 0.0
    if not 0 < rate < float("inf"):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a rate: use requests per second, e.g. 5000"
        )
    return rate


def duration(raw):
    match = DURATION.fullmatch(raw.strip())
    seconds = None
    if match and raw.strip():
        seconds = float(match["m"] or 0) * 60 + float(match["s"] or 0)
    if seconds is None or not 1 <= seconds <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a duration from 1s to 60m: use e.g. 15s, 90s or 2m"
        )
    return seconds


def latency(raw):
    match = LATENCY.fullmatch(raw.strip())
    milliseconds = None
    if match:
        milliseconds = float(match["value"]) * (1000 if match["unit"] == "s" else 1)
    if not milliseconds:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a latency: use e.g. 500ms or 1.5s")
    return milliseconds


def locustfile(raw):
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{raw!r}: no such file")
    if path.suffix != ".py":
        raise argparse.ArgumentTypeError(f"{raw!r} is not a Locust file: one ends in .py")
    return path


def locust_workers(raw):
    try:
        workers = int(raw)
    except ValueError:
        workers = -1
    if not 0 <= workers <= MAX_LOCUST_WORKERS:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a number of Locust workers: use 0 (one process) "
            f"to {MAX_LOCUST_WORKERS}"
        )
    return workers


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is one line on stderr, not the usage text too."""

    def error(self, message):
        sys.stderr.write(f"loadtest: {message}\n")
        sys.exit(2)


def parser():
    parser = OneLineParser(
        prog="nox -s loadtest --",
        description="Load-test the gunicorn presets with Locust, side by side, and say which "
        "one serves this workload best. Results go to loadtest-results/latest/.",
    )
    parser.add_argument(
        "--presets",
        type=comma_list(ALL_PRESETS, "preset"),
        help=f"presets to run, comma-separated (default: {','.join(ALL_PRESETS)}, granian "
        "when installed); the rows to compare them with: baseline is plain `gunicorn "
        "config.wsgi:application` (one sync worker); stock is each preset's worker class and "
        "worker count with gunicorn's defaults otherwise; granian is `granian --interface wsgi` "
        "sized like gthread (pip install -e '.[granian]')",
    )
{%- if cookiecutter.include_demo_endpoints %}
    described = "; ".join(f"{name}: {each.description}" for name, each in DEMO_SCENARIOS.items())
    parser.add_argument(
        "--scenarios",
        type=comma_list(tuple(DEMO_SCENARIOS), "scenario"),
        help="demo scenarios, comma-separated (default: all of them, or none with "
        f"--locustfile). {described.replace('%', '%%')}",  # argparse formats help with %
    )
{%- endif %}
    parser.add_argument(
        "--users",
        type=user_counts,
        help="concurrent Locust users, each sending its next request as soon as the last one "
        f"is answered (default: {','.join(map(str, DEFAULT_USERS))}; with --quick: "
        f"{','.join(map(str, QUICK_USERS))})",
    )
    parser.add_argument(
        "--duration",
        type=duration,
        help=f"measured time of each run, e.g. 15s or 2m (default: {DEFAULT_DURATION_S:g}s; "
        f"with --quick: {QUICK_DURATION_S:g}s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run of every preset at one user count, to check the whole session runs; "
        "with --capacity, a cheaper search (bigger steps, shorter runs, no narrowing)",
    )
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="search each preset's capacity per scenario: raise the users in steps until p99 "
        "passes --slo-p99, a request fails or throughput stops rising, then narrow down "
        f"(steps of {CAPACITY_DURATION_S:g}s; with --quick {QUICK_CAPACITY_DURATION_S:g}s)",
    )
    parser.add_argument(
        "--arrival-rate",
        type=arrival_rates,
        help="open model: requests started on a schedule whatever the server does, at each "
        "of these rates in turn (requests/s, e.g. 200,400,800); latency counts from each "
        "request's scheduled start. With --users too, both models run",
    )
    parser.add_argument(
        "--target-rps",
        type=requests_per_second,
        help="size for this rate (requests/s): instances with headroom, CPU, memory and "
        "database connections per preset, and a Kustomize overlay for the recommended one",
    )
    parser.add_argument(
        "--locustfile",
        type=locustfile,
        help="your own Locust file, run against your own endpoints; the scenario takes the "
        "file's name. Its users need no host: each run sets it",
    )
    parser.add_argument(
        "--workers",
        type=locust_workers,
        default=0,
        help="Locust worker processes (its distributed mode: a master and N workers on this "
        "machine) for more load than one process can make; default 0: one process",
    )
    parser.add_argument(
        "--slo-p99",
        type=latency,
        default=DEFAULT_SLO_P99_MS,
        help="the 99th-percentile latency the recommendation must respect, e.g. 500ms or 1s "
        f"(default: {DEFAULT_SLO_P99_MS:g}ms)",
    )
    return parser


def parse(argv=None):
    """The options, checked; exits with one line on a bad value or an impossible combination."""
    checker = parser()
    parsed = checker.parse_args(argv)
    if parsed.capacity and parsed.users:
        checker.error(
            "argument --users: --capacity searches the user counts itself: leave out --users"
        )
{%- if cookiecutter.include_demo_endpoints %}
    scenarios = parsed.scenarios
    if scenarios is None:
        scenarios = () if parsed.locustfile else tuple(DEMO_SCENARIOS)
    if parsed.locustfile and parsed.locustfile.stem in scenarios:
        checker.error(
            f"argument --locustfile: {parsed.locustfile.name} has the name of a demo scenario: "
            "rename the file"
        )
    if parsed.arrival_rate and not scenarios:
        checker.error(
            "argument --arrival-rate: the open model runs the demo scenarios' requests on a "
            "schedule; a Locust file of yours runs with --users: add --scenarios"
        )
{%- else %}
    if parsed.locustfile is None:
        checker.error(
            "no scenario to run: this project has no demo endpoints, so pass your own "
            "Locust file with --locustfile PATH"
        )
    if parsed.arrival_rate:
        checker.error(
            "argument --arrival-rate: the open model runs the demo scenarios' requests on a "
            "schedule, and this project has no demo endpoints: use --users"
        )
{%- endif %}
    presets = parsed.presets
    if presets is None:
        presets = tuple(row for row in ALL_PRESETS if row != GRANIAN or granian_installed())
    elif GRANIAN in presets and not granian_installed():
        checker.error("argument --presets: granian is not installed: pip install -e '.[granian]'")
    users = parsed.users
    if users is None and not parsed.capacity and not parsed.arrival_rate:
        users = QUICK_USERS if parsed.quick else DEFAULT_USERS
    if parsed.capacity:
        default_duration = QUICK_CAPACITY_DURATION_S if parsed.quick else CAPACITY_DURATION_S
    else:
        default_duration = QUICK_DURATION_S if parsed.quick else DEFAULT_DURATION_S
    return Options(
        presets=presets,
{%- if cookiecutter.include_demo_endpoints %}
        scenarios=scenarios,
{%- endif %}
        users=users or (),
        duration_s=parsed.duration or default_duration,
        quick=parsed.quick,
        locustfile=parsed.locustfile,
        workers=parsed.workers,
        slo_p99_ms=parsed.slo_p99,
        capacity=parsed.capacity,
        arrival_rates=parsed.arrival_rate or (),
        target_rps=parsed.target_rps,
    )
