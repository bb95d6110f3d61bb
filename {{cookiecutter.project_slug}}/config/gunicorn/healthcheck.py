"""Container health check: `python -m config.gunicorn.healthcheck [PATH]` exits 0 if alive.

Without PATH it asks /livez of the instance's metrics server, on
127.0.0.1:$METRICS_PORT: the master's own watch over its workers' heartbeats
(observability/liveness.py), which answers at once however busy the workers
are, and fails when they are all stuck or the master is. (/healthz waits behind
the requests: under 500 clients the sync preset missed 2 of 24 probes at 5 s,
and a busy container would be restarted.) The kit brings it, so a project that
copies the kit needs no page of its own for it.

With PATH (/health/, say) it asks that page of the service on 127.0.0.1:$PORT
instead, for a project that wants its own check: name a page that answers 200
without the database.

The image needs no curl. Any failure exits 1 with one line saying what went wrong.
"""

import sys
import urllib.error
import urllib.request

from config.gunicorn.environment import BadSetting, read_environment
from config.gunicorn.observability.settings import read_observability

TIMEOUT_S = 2  # under the 3 s that the image's HEALTHCHECK gives the command


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and not args[0].startswith("/")):
        sys.exit("usage: python -m config.gunicorn.healthcheck [PATH], e.g. /health/")
    try:
        if args:
            url = f"http://127.0.0.1:{read_environment().port}{args[0]}"
        else:
            url = f"http://127.0.0.1:{read_observability().metrics_port}/livez"
    except BadSetting as exc:
        sys.exit(str(exc))
    # No proxy: HTTP_PROXY in the container's environment must not reroute a local call.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S):
            pass
    except urllib.error.HTTPError as exc:  # an answer, not a 2xx: the reason is its body
        with exc:
            reason = exc.read().decode(errors="replace").strip().splitlines()
        sys.exit(f"unhealthy: {url}: {reason[0] if reason else exc}")
    except OSError as exc:  # refused, timed out
        sys.exit(f"unhealthy: {url}: {exc}")


if __name__ == "__main__":
    main()
