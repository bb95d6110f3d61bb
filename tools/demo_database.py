"""Print a DATABASE_URL for the demo: $DATABASE_URL, or a fresh local PostgreSQL database.

Falls back to SQLite (an empty line: the project's default) with a note on stderr
when no PostgreSQL server answers on 127.0.0.1:5432.
"""

import os
import sys

import psycopg

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEMO_DATABASE = "my_service_demo"


def main():
    if os.environ.get("DATABASE_URL"):
        print(os.environ["DATABASE_URL"])
        return
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    except psycopg.OperationalError as exc:
        print(f"note: no PostgreSQL at {ADMIN_URL} ({exc}); using SQLite", file=sys.stderr)
        print("")
        return
    print(ADMIN_URL.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}")


if __name__ == "__main__":
    main()
