"""Django settings for {{ cookiecutter.project_name }}.

Every value that differs between machines comes from the environment, under
the names most hosting platforms already use (DATABASE_URL, DJANGO_SECRET_KEY,
...). A local `.env` file is read too; real environment variables win over it.
Bad values stop start-up with one line naming the variable (see manage.py and
config/gunicorn/common.py, which print it without a traceback).
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from environs import Env, EnvValidationError, validate

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env(eager=False)  # collect every bad variable, report them together
env.read_env(BASE_DIR / ".env", recurse=False)

DEBUG = env.bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", "")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
{%- if cookiecutter.include_demo_endpoints %}
# Endpoints that let anyone make the server wait or burn CPU: load tests only.
DEMO_ENDPOINTS = env.bool("DJANGO_DEMO_ENDPOINTS", False)
{%- endif %}
# Without DATABASE_URL the service runs on SQLite, so `manage.py runserver`
# works at once; with it, PostgreSQL through the installed driver.
# Persistent connections, checked before reuse: a thread (sync, gthread) keeps its
# connection CONN_MAX_AGE seconds, which saves a new connection per request (about
# 10 ms here), and a connection the server or a proxy closed meanwhile is replaced,
# not failed. The pooled presets (gevent, asgi) turn both off, below.
DATABASES = {
    "default": env.dj_db_url(
        "DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env.int("DJANGO_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# Connections per process in a pool, set by the gunicorn master for the gevent and asgi
# presets (budget / workers, see config/gunicorn/common.py); unset or 0: no pool.
DB_POOL_SIZE = env.int("DJANGO_DB_POOL_SIZE", 0, validate=validate.Range(min=0))
# How long a request waits for a pooled connection before its 503: time for a burst to
# drain (1000 requests of a gevent worker, 20 connections, 50 ms each: 2.5 s), well
# short of the 60 s after which load balancers give up on a request themselves.
DB_POOL_TIMEOUT = env.float(
    "DJANGO_DB_POOL_TIMEOUT", 10.0, validate=validate.Range(min=0, min_inclusive=False)
)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 60 * 60 * 24 * 365)
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", "INFO")

try:
    env.seal()
except EnvValidationError as exc:
    problems = "; ".join(
        f"{name}: {' '.join(messages)}" for name, messages in exc.error_messages.items()
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

if DB_POOL_SIZE:
    # Each request gives its connection back at its end: to the pool, or closed (SQLite).
    # Kept, it would stay with its greenlet or ASGI thread, and Django refuses pools with it.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Nor a health check each time the pool lends a connection: that round trip, made
    # while holding a connection other requests wait for, cost 15% of the throughput
    # (gevent, 500 clients on /demo/db?ms=50: 565 to 585 requests/s with it, 660 to 710
    # without). A connection the server closed while idle in the pool fails one request
    # (a 503, Retry-After: 1), then is dropped.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A readiness probe must answer quickly when the database is unreachable.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
{%- if cookiecutter.database_driver == "psycopg" %}
    if DB_POOL_SIZE:
        # Django's pool (psycopg_pool): connections are opened as requests need them, and
        # closed after 10 idle minutes.
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 0,
            "max_size": DB_POOL_SIZE,
            "timeout": DB_POOL_TIMEOUT,
        }
{%- else %}
    if DB_POOL_SIZE:
        # Django's own pool needs psycopg 3: this backend gives psycopg2 the same contract.
        DATABASES["default"]["ENGINE"] = "{{ cookiecutter.project_slug }}.db.pooled_psycopg2"
        DATABASES["default"]["POOL"] = {"max_size": DB_POOL_SIZE, "timeout": DB_POOL_TIMEOUT}
{%- endif %}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "{{ cookiecutter.project_slug }}",
]

MIDDLEWARE = [
    # First, so probes skip host validation and the HTTPS redirect: orchestrators
    # call them by IP over plain HTTP.
    "{{ cookiecutter.project_slug }}.probes.ProbeMiddleware",
    # A database that is down or a pool that is exhausted is a 503, not a 500.
    "{{ cookiecutter.project_slug }}.db.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
}
