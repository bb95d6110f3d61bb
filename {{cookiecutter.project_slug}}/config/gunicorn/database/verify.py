"""Whether the Django settings do what the database plan says, read from DATABASES itself.

The master asks once the settings are loaded (startup.py) and refuses to start,
in one line, on the first problem. What counts is what Django will do with the
settings, not what the environment hoped: a pool of the planned size on every
PostgreSQL database where the plan has one, with CONN_MAX_AGE 0, and a pool
the installed driver supports.
"""

from config.gunicorn.database.settings import POOL_ENGINE, POSTGRESQL_ENGINES

PSYCOPG_POOL_DEFAULT_SIZE = 4  # psycopg_pool's min_size, and max_size when not given
HOW = "build the entry with pooled() from config/gunicorn/database/settings.py"


def pool_size(database):
    """Connections in each process's pool for this DATABASES entry; None without a pool."""
    if database.get("ENGINE") == POOL_ENGINE:
        return database["POOL"]["max_size"]
    pool = database.get("OPTIONS", {}).get("pool")
    if not pool:
        return None
    if pool is True:
        return PSYCOPG_POOL_DEFAULT_SIZE
    return pool.get("max_size") or pool.get("min_size", PSYCOPG_POOL_DEFAULT_SIZE)


def postgresql(databases):
    return {
        alias: database
        for alias, database in databases.items()
        if database.get("ENGINE") in POSTGRESQL_ENGINES
    }


def planned_pools(databases):
    """The pool size of each PostgreSQL database (None: no pool); None without PostgreSQL."""
    found = postgresql(databases)
    return [pool_size(database) for database in found.values()] if found else None


def database_problems(databases, plan, psycopg3, psycopg_pool):
    """What keeps `databases` (settings.DATABASES) from doing what `plan` says: one line each.

    `psycopg3`, `psycopg_pool`: whether each is installed (Django's pool needs both).
    """
    problems = []
    for alias, database in postgresql(databases).items():
        size = pool_size(database)
        age = database.get("CONN_MAX_AGE", 0)
        djangos_pool = database.get("OPTIONS", {}).get("pool")
        if djangos_pool and not psycopg3:
            problems.append(
                f"Database {alias!r}: Django's pool (OPTIONS['pool']) needs psycopg 3, and "
                f"this is psycopg2: {HOW}, which gives either driver a pool of its own"
            )
        elif djangos_pool and not psycopg_pool:
            problems.append(
                f"Database {alias!r}: Django's pool (OPTIONS['pool']) needs psycopg_pool, "
                f"which is not installed: pip install 'psycopg[pool]', or {HOW}"
            )
        elif plan.pool is None:
            continue  # a persistent connection per request slot fits the budget
        elif size is None:
            problems.append(
                f"Database {alias!r} has no pool (CONN_MAX_AGE={age}): the {plan.model} preset "
                f"plans {plan.describe()} (DATABASE_CONNECTION_BUDGET={plan.budget}), and "
                f"without a pool each request in flight could hold a connection: {HOW}"
            )
        elif size != plan.pool:
            problems.append(
                f"Database {alias!r} has a pool of {size} per worker where the {plan.model} "
                f"preset plans {plan.pool} (DATABASE_CONNECTION_BUDGET={plan.budget} over "
                f"{plan.workers} workers): {HOW}"
            )
        elif age != 0:
            problems.append(
                f"Database {alias!r} keeps connections (CONN_MAX_AGE={age}) with a pool: they "
                f"would never go back to it: {HOW}"
            )
    return problems
