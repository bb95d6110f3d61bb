"""Container health check: `python -m config.gunicorn.healthcheck` exits 0 when /healthz answers.

It asks the service on 127.0.0.1:$PORT, where every preset listens, so the image
needs no curl. Any failure exits 1 with one line saying what went wrong.
"""

import sys
import urllib.request

from config.gunicorn.environment import BadSetting, read_environment


def main():
    try:
        port = read_environment().port
    except BadSetting as exc:
        sys.exit(str(exc))
    url = f"http://127.0.0.1:{port}/healthz"
    # No proxy: HTTP_PROXY in the container's environment must not reroute a local call.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2):
            pass
    except OSError as exc:  # refused, timed out, or an HTTP error status
        sys.exit(f"unhealthy: {url}: {exc}")


if __name__ == "__main__":
    main()
