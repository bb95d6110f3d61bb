"""Error reporting to Sentry when SENTRY_DSN is set: started in each worker, after the fork.

Every preset imports the application in the master and forks the workers from
it; sentry-sdk's transport is a thread, and a thread started in the master does
not survive the fork: events would queue in each worker and never leave. So the
master only checks that sentry-sdk is there, and each worker starts it
(post_fork). Under gevent the transport's thread is a greenlet (the preset
patches threading first), which sentry-sdk supports.

What is reported: unhandled exceptions in views (a 500), and log records at
ERROR, each tagged with the request ID. Not a pool timeout or an unreachable
database: the database middleware answers those with a 503 and a warning, which
is a condition of the moment, not a bug. Sentry's own environment variables
(SENTRY_ENVIRONMENT, SENTRY_RELEASE, ...) apply.
"""

from importlib.util import find_spec

from config.gunicorn.observability.requestid import current

FLUSH_TIMEOUT_S = 2.0


def problem():
    """One line if SENTRY_DSN is set but sentry-sdk is not installed, else None."""
    if find_spec("sentry_sdk") is None:
        return "SENTRY_DSN is set but sentry-sdk is not installed: pip install sentry-sdk"
    return None


def start(dsn):
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        integrations=[DjangoIntegration()],
        send_default_pii=False,
        before_send=tag_request_id,
    )


def tag_request_id(event, hint):
    request_id = current.get()
    if request_id is not None:
        event.setdefault("tags", {})["request_id"] = request_id
    return event


def stop():
    """Send what is queued before the worker exits (within FLUSH_TIMEOUT_S)."""
    import sentry_sdk

    sentry_sdk.flush(timeout=FLUSH_TIMEOUT_S)
