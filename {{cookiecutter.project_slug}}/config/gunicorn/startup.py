"""What the gunicorn master checks before any worker forks, and the one line it logs.

Each check stops start-up with one line saying what to change, and no worker
started (refused in each worker instead, the same failure comes once per worker,
and gunicorn's master then dies with a traceback of its own):

- the versions the preset runs on (versions.py), as the preset loads;
- gunicorn's own options (`--workers`, `--threads`, ...: the command line and
  GUNICORN_CMD_ARGS), held to the ranges of their variables (environment.py);
- the database connections: the plan (database/plan.py) for the final number
  of workers, set as soon as gunicorn knows it (nworkers_changed), then
  compared, once the settings are loaded, with what they really do
  (database/verify.py), the 503 middleware included. The start-up line reports
  what the settings do.
- the Django settings load (a bad environment value is one line, not a
  traceback in every worker). They are imported once, right after the plan is
  exported to the environment, so that every module of theirs (a split
  settings package's base module too) reads the plan;
- DEBUG on an address other hosts can reach (production.py, which also warns
  about what serves but should be fixed, DEBUG on this host only included).

A database that refuses the connection (a wrong password, a missing database,
nothing listening) does not stop start-up, since it may come back by itself:
it is one warning line at start-up, and /readyz answers 503 until it does.
"""

import os
import sys
from importlib import import_module
from importlib.util import find_spec

from django.core.exceptions import ImproperlyConfigured

from config.gunicorn import openfiles, production, versions
from config.gunicorn.database.plan import BadPlan, plan_database
from config.gunicorn.database.settings import statement_timeout_default
from config.gunicorn.database.verify import (
    cannot_connect,
    database_problems,
    middleware_problem,
    planned_pools,
    postgresql,
)
from config.gunicorn.environment import BadSetting, check_options, read_environment
from config.gunicorn.sizing import Sizing, connections_held
from config.gunicorn.workers import model_of

READY_CHECK_TIMEOUT_S = 2  # as /readyz: a database that does not answer delays start-up no more


def require_versions(model):
    """Stop here, in one line, if what the `model` preset runs on is missing or too old."""
    try:
        versions.require(model)
    except versions.UnsupportedVersion as exc:
        sys.exit(str(exc))


def check_django_settings(module):
    """Import the settings module, here, so that a bad value stops gunicorn in one line."""
    try:
        import_module(module)
    except ImproperlyConfigured as exc:
        sys.exit(f"Configuration error: {exc}")
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"{module}.".startswith(f"{exc.name}."):
            raise  # the settings module exists; something it imports does not
        sys.exit(
            f"Configuration error: no Django settings module {module!r}: set "
            "DJANGO_SETTINGS_MODULE to your project's (e.g. mysite.settings)"
        )


def worker_model(cfg):
    """sync, gthread, gevent or asgi: the worker model the settings run."""
    return model_of(cfg.worker_class_str)


def plan_for(cfg, budget, workers=None):
    """The database plan for gunicorn's final settings `cfg`, and `workers` if they changed."""
    workers = cfg.workers if workers is None else workers
    sizing = Sizing(worker_model(cfg), workers, "", cfg.threads, cfg.worker_connections)
    return plan_database(sizing, budget)


def plan_connections(server, workers, previous, budget):
    """Export the plan to the workers (and to the settings the master preloads).

    gunicorn calls nworkers_changed after applying the command line and before loading
    a preloaded app: the first time, gunicorn's options are checked, the plan exported
    and the settings loaded with it. TTIN/TTOU call it again: workers forked after that
    get the new share; running ones keep theirs until they are replaced.
    """
    if previous is None:
        try:
            check_options(server.cfg, worker_model(server.cfg), read_environment().max_workers)
        except BadSetting as exc:
            sys.exit(str(exc))
    try:
        plan = plan_for(server.cfg, budget, workers)
    except BadPlan as exc:
        if previous is None:
            sys.exit(str(exc))
        server.log.error("%s; workers forked from now on keep the previous pool", exc)
        return
    os.environ.update(plan.environ())
    if previous is not None:
        server.log.info("%s workers: database: %s", workers, plan.describe())
        return
    # Served requests get a statement timeout unless the environment sets one (or 0).
    variable, seconds = statement_timeout_default()
    os.environ[variable] = seconds
    check_django_settings(os.environ["DJANGO_SETTINGS_MODULE"])


def verify_and_log(server, preset, sizing, cpu, budget, allow_debug):
    """Refuse settings that do not do what the plan says; else log the start-up line."""
    from django.conf import settings  # loaded by now: the presets preload the app

    cfg = server.cfg
    refusal = production.debug_refusal(settings, cfg.address, allow_debug)
    if refusal:
        sys.exit(refusal)
    plan = plan_for(cfg, budget)
    installed = {name: find_spec(name) is not None for name in ("psycopg", "psycopg_pool")}
    problems = database_problems(
        settings.DATABASES, plan, installed["psycopg"], installed["psycopg_pool"]
    )
    middleware = middleware_problem(settings.MIDDLEWARE, settings.DATABASES, plan)
    if middleware and middleware.refused:
        problems.append(str(middleware))
    if problems:
        sys.exit(problems[0])
    pools = planned_pools(settings.DATABASES)
    database = plan.describe(pool=pools[0] if pools else None) if pools is not None else None
    # Command-line flags and GUNICORN_CMD_ARGS are applied after the preset.
    source = sizing.workers_from if cfg.workers == sizing.workers else "gunicorn option"
    each = []
    if plan.model == "gthread":
        each.append(f"{cfg.threads} threads")
    if plan.model in ("gthread", "gevent"):
        each.append(f"{cfg.worker_connections} connections")
    workers = f"{cfg.workers} workers ({source})"
    if each:
        workers += f", {' and '.join(each)} each"
    # The sync worker closes every connection, whatever keepalive says.
    keepalive_on = cfg.keepalive and plan.model != "sync"
    keepalive = f"{cfg.keepalive} s" if keepalive_on else "off"
    database = (
        f"database: {database}; budget {budget} (DATABASE_CONNECTION_BUDGET)"
        if database
        else "database: not PostgreSQL, no budget to keep"
    )
    server.log.info(
        "Preset %s: %s; keep-alive %s; timeout %s s; CPU budget %s; %s",
        preset,
        workers,
        keepalive,
        cfg.timeout,
        cpu,
        database,
    )
    if settings.DEBUG:
        server.log.warning(production.debug_warning(cfg.address))
    else:
        for warning in production.warnings(settings):
            server.log.warning(warning)
    if middleware:
        server.log.warning(str(middleware))
    files = openfiles.shortfall(plan.model, connections_held(plan.model, cfg.worker_connections))
    if files:
        server.log.warning(files)
    for alias in postgresql(settings.DATABASES):
        reason = cannot_connect(alias, READY_CHECK_TIMEOUT_S)
        if reason:
            server.log.warning(
                "Database %r cannot be reached: %s; /readyz answers 503 until it can",
                alias,
                reason,
            )
