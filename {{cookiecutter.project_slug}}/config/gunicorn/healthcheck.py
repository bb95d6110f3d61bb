"""Container health check: `python -m config.gunicorn.healthcheck` exits 0 while the instance lives.

It asks /livez of the instance's metrics server, on 127.0.0.1:$METRICS_PORT:
the master's own watch over its workers' heartbeats (observability/liveness.py),
which answers at once however busy the workers are, and fails when they are all
stuck or the master is. (/healthz waits behind the requests: under 500 clients
the sync preset missed 2 of 24 probes at 5 s, and a busy container would be
restarted.) The image needs no curl. Any failure exits 1 with one line saying
what went wrong.
"""

import sys
import urllib.error
import urllib.request

from config.gunicorn.environment import BadSetting
from config.gunicorn.observability.settings import read_observability

TIMEOUT_S = 2


def main():
    try:
        port = read_observability().metrics_port
    except BadSetting as exc:
        sys.exit(str(exc))
    url = f"http://127.0.0.1:{port}/livez"
    # No proxy: HTTP_PROXY in the container's environment must not reroute a local call.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S):
            pass
    except urllib.error.HTTPError as exc:  # 503: the reason is the body's one line
        sys.exit(f"unhealthy: {url}: {exc.read().decode(errors='replace').strip()}")
    except OSError as exc:  # refused, timed out
        sys.exit(f"unhealthy: {url}: {exc}")


if __name__ == "__main__":
    main()
