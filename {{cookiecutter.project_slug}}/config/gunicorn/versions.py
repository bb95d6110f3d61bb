"""The versions the kit needs, checked before a preset starts: one line, not a traceback.

A project that copies the kit keeps its own requirements, and the next
`pip install -r requirements.txt` can put an older gunicorn back: on gunicorn
22 the gthread preset started as usual but answered 21 of 50 requests on
SIGTERM (its drain uses gunicorn 27's worker API), and the asgi preset died
with a traceback (gunicorn.asgi is new in 25). Each preset checks what it runs
on as it loads (base.size()), and `python -m config.gunicorn` before it starts
gunicorn, and stops with the first problem, naming the version found, the one
needed and the pip line.

    Python     3.10    what gunicorn 27 and Django 5.2 support
    Django     5.2.8   5.2 LTS (supported until April 2028)
    gunicorn   27.0.1  the drain and the asgi worker (workers/)
    gevent     26.9    the gevent preset
    uvloop     0.21    the asgi preset's event loop
    psycopg    3.1.14  under gevent, where it waits cooperatively from this version on
                       (psycopg2 needs psycogreen there: cooperative.py checks it)

The generated project's pyproject.toml has the same lower bounds, and the
template's tests install the lowest of them (uv's lowest-direct resolution) as
well as the newest: these are the versions the kit is tested on.
"""

import re
import sys
from importlib import metadata

PYTHON = (3, 10)
# distribution names (the first one installed counts), minimum, why, what to install.
PACKAGES = {
    "django": (("django",), "5.2.8", "Django 5.2 LTS", "Django>=5.2.8"),
    "gunicorn": (
        ("gunicorn",),
        "27.0.1",
        "its workers drain on SIGTERM and serve asgi with gunicorn 27's API",
        "gunicorn[gevent]>=27.0.1,<28",
    ),
    "gevent": (("gevent",), "26.9", "the gevent preset", "gevent>=26.9,<27"),
    "uvloop": (("uvloop",), "0.21", "the asgi preset's event loop", "uvloop>=0.21,<1"),
    "psycopg": (
        ("psycopg",),
        "3.1.14",
        "psycopg waits cooperatively under gevent from 3.1.14 on",
        "psycopg[binary]>=3.1.14",
    ),
}
# What each preset runs on, beyond Django and gunicorn.
NEEDS = {"sync": (), "gthread": (), "gevent": ("gevent",), "asgi": ("uvloop",)}


class UnsupportedVersion(RuntimeError):
    """str() is the one line saying what is installed, what is needed and how to get it."""


def parse(version):
    """(27, 0, 1) from '27.0.1', '27.0.1.post1' or '2.9.10 (dt dec pq3 ext lo64)'."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split()[0])[:3])


def installed(names):
    """The version of the first of the distributions `names` that is installed, or None."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def problem(package, required=True):
    """One line if `package` is missing (when `required`) or older than the kit needs."""
    names, minimum, why, requirement = PACKAGES[package]
    version = installed(names)
    if version is None:
        if not required:
            return None
        return f"{names[0]} is not installed ({why}): pip install '{requirement}'"
    if parse(version) < parse(minimum):
        return (
            f"{names[0]} {version} is installed and the kit needs {minimum} or later ({why}): "
            f"pip install '{requirement}', and raise the version your requirements pin"
        )
    return None


def problems(model):
    """What keeps the `model` preset (sync, gthread, gevent or asgi) from running here."""
    found = []
    if sys.version_info[:2] < PYTHON:
        found.append(
            f"Python {sys.version.split()[0]} runs this, and the kit needs Python "
            f"{'.'.join(map(str, PYTHON))} or later"
        )
    for package in ("django", "gunicorn", *NEEDS.get(model, ())):
        found.append(problem(package))
    if model == "gevent":  # Django prefers psycopg 3 where it is installed
        found.append(problem("psycopg", required=False))
    return [line for line in found if line]


def require(model):
    """Raise UnsupportedVersion with the first problem of the `model` preset, if any."""
    found = problems(model)
    if found:
        raise UnsupportedVersion(found[0])
