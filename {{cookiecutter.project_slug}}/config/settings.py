"""Django settings for {{ cookiecutter.project_name }}.

Every value that differs between machines comes from the environment, under
the names most hosting platforms already use (DATABASE_URL, DJANGO_SECRET_KEY,
...). A local `.env` file is read too, for development; real environment
variables win over it, and the image never reads one (DJANGO_READ_DOT_ENV_FILE
is false there). Bad values stop start-up with one line naming the variable,
the value and what is wrong (see manage.py and config/gunicorn/startup.py,
which print it without a traceback); the gunicorn presets read theirs with the
same rules (config/gunicorn/environment.py).
"""

import os
from pathlib import Path

{% if cookiecutter.django_version == "5.2" -%}
from csp.constants import NONE, SELF
{% endif -%}
from django.core.exceptions import ImproperlyConfigured
{%- if cookiecutter.django_version != "5.2" %}
from django.utils.csp import CSP
{%- endif %}
from environs import Env, EnvValidationError

from config.gunicorn.database.settings import pooled
from config.gunicorn.environment import BadSetting
from config.gunicorn.observability.logs import log_format

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env(eager=False)  # collect every bad variable, report them together
if env.bool("DJANGO_READ_DOT_ENV_FILE", True):
    env.read_env(BASE_DIR / ".env", recurse=False)

DEBUG = env.bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", "")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
{%- if cookiecutter.include_demo_endpoints %}
# Endpoints that let anyone make the server wait or burn CPU: load tests only.
DEMO_ENDPOINTS = env.bool("DJANGO_DEMO_ENDPOINTS", False)
# The service /demo/upstream calls (its /demo/io); `nox -s loadtest` starts one.
DEMO_UPSTREAM_URL = env.str("DJANGO_DEMO_UPSTREAM_URL", "")
{%- endif %}
# Without DATABASE_URL the service runs on SQLite, so `manage.py runserver`
# works at once; with it, PostgreSQL through the installed driver.
# Persistent connections, checked before reuse: a thread (sync, gthread) keeps its
# connection CONN_MAX_AGE seconds, which saves a new connection per request (about
# 10 ms here), and a connection the server or a proxy closed meanwhile is replaced,
# not failed. Where the gunicorn master plans a pool (gevent, asgi, and gthread on 5
# CPUs or more), pooled() turns both off and gives the database its pool: see
# config/gunicorn/database/settings.py.
database = env.dj_db_url(
    "DATABASE_URL",
    default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
    conn_max_age=env.int("DJANGO_CONN_MAX_AGE", 60),
    conn_health_checks=True,
)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 60 * 60 * 24 * 365)
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", "INFO")

try:
    env.seal()
except EnvValidationError as exc:
    problems = "; ".join(
        f"{name}={os.environ.get(name)!r}: {' '.join(messages)}"
        for name, messages in exc.error_messages.items()
    )
    raise ImproperlyConfigured(f"invalid environment variable(s): {problems}") from None

if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: set it in the environment or .env "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DJANGO_DEBUG=true for local development"
        )
    SECRET_KEY = "django-insecure-local-development-only"

DATABASES = {"default": pooled(database)}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
{%- if cookiecutter.django_version == "5.2" %}
    "csp",
{%- endif %}
    "{{ cookiecutter.project_slug }}",
]

MIDDLEWARE = [
    # Names each request's route for its metrics (Django's view name, never the path).
    "config.gunicorn.observability.routes.RouteMiddleware",
    # So probes skip host validation and the HTTPS redirect: orchestrators
    # call them by IP over plain HTTP.
    "{{ cookiecutter.project_slug }}.probes.ProbeMiddleware",
    # A database that is down or a pool that is exhausted is a 503, not a 500.
    "config.gunicorn.database.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
{%- if cookiecutter.django_version == "5.2" %}
    "csp.middleware.CSPMiddleware",
{%- else %}
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
{%- endif %}
    # WhiteNoise's, without its thread hop on every request under ASGI.
    "config.gunicorn.staticfiles.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Static files: collected into STATIC_ROOT and served by WhiteNoise, so the
# admin looks right under gunicorn with no web server in front.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# HTTPS. TLS ends at the load balancer; gunicorn sets the request scheme from
# X-Forwarded-Proto when the proxy's address is in FORWARDED_ALLOW_IPS, so Django
# needs no SECURE_PROXY_SSL_HEADER (which would trust the header from anyone).
{%- if cookiecutter.include_demo_endpoints %}
# Load generators speak plain HTTP to the process (probes never reach this check).
SECURE_REDIRECT_EXEMPT = [r"^demo/"]
{%- endif %}
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# Content-Security-Policy on every page: this origin's scripts, styles, images and fonts
# only, no inline script, no plugin, no framing. The admin renders under it (the template's
# tests load /admin/ in Chromium and count no violation); the probes and demo endpoints
# answer JSON. A page that needs a CDN or an inline script adds it here, not 'unsafe-inline'.
{%- if cookiecutter.django_version == "5.2" %}
# django-csp: Django 5.2 has no policy of its own (Django 6.0 does).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
{%- else %}
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
{%- endif %}

# Logs: text for a terminal, LOG_FORMAT=json for a log pipeline (one object per line). Every
# line logged while a request runs carries its ID (X-Request-ID), as gunicorn's error and
# access logs do: see config/gunicorn/observability/. Errors go to Sentry when SENTRY_DSN is
# set, traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is: each gunicorn worker starts
# them after the fork (observability/errors.py, tracing.py).
try:
    LOG_FORMAT = log_format()
except BadSetting as exc:
    raise ImproperlyConfigured(str(exc)) from None
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "config.gunicorn.observability.logs.JsonFormatter"},
    },
    "filters": {
        "one_line_warning": {"()": "config.logs.WarningWithoutTraceback"},
        "request_id": {"()": "config.gunicorn.observability.logs.RequestIdFilter"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "loggers": {"django.security.DisallowedHost": {"filters": ["one_line_warning"]}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
}
