"""The resilience session's command-line options, checked before anything starts.

`nox -s resilience -- --help` lists them. A bad value stops the session with
one line that names the option and says what it accepts, as the load test's do.
"""

import argparse
import sys
from dataclasses import dataclass

from loadtest.options import comma_list
from loadtest.server import PRESETS

from .scenarios import SCENARIOS


@dataclass(frozen=True)
class Options:
    presets: tuple[str, ...]
    scenarios: tuple[str, ...]
    quick: bool


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is one line on stderr, not the usage text too."""

    def error(self, message):
        sys.stderr.write(f"resilience: {message}\n")
        sys.exit(2)


def parser():
    parser = OneLineParser(
        prog="nox -s resilience --",
        description="Break every gunicorn preset on purpose (drain, worker crash, hung "
        "request, database outage, slow clients, large and chunked bodies, thousands of held "
        "connections, trickling bodies, liveness under saturation, stops during boot, a "
        "leaking worker) and count what is answered, failed and lost. Results go to "
        "resilience-results/latest/. Exits 1 if a request is lost or an expectation fails.",
    )
    parser.add_argument(
        "--presets",
        type=comma_list(PRESETS, "preset"),
        default=PRESETS,
        help=f"presets to break, comma-separated (default: {','.join(PRESETS)})",
    )
    parser.add_argument(
        "--scenarios",
        type=comma_list(tuple(SCENARIOS), "scenario"),
        default=tuple(SCENARIOS),
        help=f"scenarios to run, comma-separated (default: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="less steady load around each failure, slow clients watched only as long as the "
        "timeouts they test need, a 100 kB trickling body instead of 1 MB, 10 starts instead "
        "of 20, no recycle control run: about 15 minutes instead of 25 on 2 CPUs",
    )
    return parser


def parse(argv=None):
    parsed = parser().parse_args(argv)
    return Options(presets=parsed.presets, scenarios=parsed.scenarios, quick=parsed.quick)
