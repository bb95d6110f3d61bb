"""Container health check: `python -m config.gunicorn.healthcheck [PATH]` exits 0 when PATH answers.

It asks the service on 127.0.0.1:$PORT, where every preset listens, so the image
needs no curl. PATH is /healthz by default, the liveness probe of the project the
kit comes from; a project that copies the kit names its own page that answers
200 without the database (its health URL, or any cheap page). Any failure exits
1 with one line saying what went wrong.
"""

import sys
import urllib.error
import urllib.request

from config.gunicorn.environment import BadSetting, read_environment

DEFAULT_PATH = "/healthz"
TIMEOUT_S = 2  # under the 3 s that the image's HEALTHCHECK gives the command


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and not args[0].startswith("/")):
        sys.exit("usage: python -m config.gunicorn.healthcheck [PATH], e.g. /healthz")
    path = args[0] if args else DEFAULT_PATH
    try:
        port = read_environment().port
    except BadSetting as exc:
        sys.exit(str(exc))
    url = f"http://127.0.0.1:{port}{path}"
    # No proxy: HTTP_PROXY in the container's environment must not reroute a local call.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S):
            pass
    except urllib.error.HTTPError as exc:  # an answer, but not a 2xx one
        exc.close()
        sys.exit(f"unhealthy: {url}: {exc}")
    except OSError as exc:  # refused or timed out
        sys.exit(f"unhealthy: {url}: {exc}")


if __name__ == "__main__":
    main()
