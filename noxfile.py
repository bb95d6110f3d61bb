"""Sessions of the template repository. `nox -l` lists them.

- tests:    the template's own test suite (bakes, hooks, generated projects, presets).
- versions: the kit on the lowest and the newest versions the project claims (part of tests).
- demo:     bake the default project, exercise it as a new user would, load-test every preset.
- lock:     re-lock the generated project's dependencies, runtime and dev.
"""

import itertools
import json
import shutil
from pathlib import Path

import nox

TEMPLATE_PROJECT = Path(__file__).parent / "{{cookiecutter.project_slug}}"
PROJECT_DIST_NAME = "{{ cookiecutter.project_slug.replace('_', '-') }}"
CHOICES = json.loads((Path(__file__).parent / "cookiecutter.json").read_text(encoding="utf-8"))
DRIVERS = CHOICES["database_driver"]
DJANGO_VERSIONS = CHOICES["django_version"]
# Each lock file of the bake, and what uv pip compile is told to put in it.
LOCKS = {"requirements": "--generate-hashes", "requirements-dev": "--extra dev --extra granian"}
# Each lock is made for the oldest Python its Django supports here, and holds for the newer.
DJANGO_OLDEST_PYTHON = {"5.2": "3.11", "6.1": "3.12"}

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]


@nox.session
def tests(session):
    """Run the template's tests in two workers, the modules that time load one after another
    on one of them (tests/conftest.py); pass pytest options after `--` (`-n 0`: one process)."""
    session.install("-r", "tests/requirements.txt")
    session.run("pytest", "-n", "2", "--dist", "loadfile", *session.posargs)


@nox.session
def versions(session):
    """Install a bake at the lowest versions it claims (uv's lowest-direct) and the newest,
    and run its tests and every preset on each: tests/test_versions.py, which `tests` runs too.
    """
    session.install("-r", "tests/requirements.txt")
    session.run("pytest", "tests/test_versions.py", "-s", *session.posargs)


@nox.session
def demo(session):
    """Bake the default project into demo-output/ and run it as a user would: its lint, tests
    and smoke sessions, then a quick load test of every preset, which ends with the
    recommendation, the table and where its report is.
    """
    session.install("-r", "tests/requirements.txt", "nox[uv]")
    output = Path("demo-output")
    shutil.rmtree(output / "my_service", ignore_errors=True)
    session.run("cookiecutter", ".", "--no-input", "-o", str(output))
    # The database: DATABASE_URL if set; else each session's own PostgreSQL from the project's
    # devdb.py (the local server's, or an embedded one where there is none), which it names in
    # its first line and removes when it ends, Ctrl-C included: hence the time given to stop.
    stop_grace = {"interrupt_timeout": 90, "terminate_timeout": 15}
    with session.chdir(output / "my_service"):
        session.run("nox", "-s", "lint", "tests", "smoke", **stop_grace)
        session.run("nox", "-s", "loadtest", "--", "--quick", **stop_grace)


@nox.session
def lock(session):
    """Re-lock the generated project: one lock per database driver and Django version.

    requirements.lock, the service's: with hashes, since the image installs it with
    --require-hashes --no-deps, so every file is checked and nothing the lock does not
    name is installed. requirements-dev.lock, the dev extra's too (the Docker bake's,
    a superset): a constraints file for nox, so that CI installs the same versions on
    every run.
    """
    session.install("-r", "tests/requirements.txt")
    tmp = Path(session.create_tmp())
    locks = TEMPLATE_PROJECT / "locks"
    for driver, django in itertools.product(DRIVERS, DJANGO_VERSIONS):
        python = DJANGO_OLDEST_PYTHON[django]
        project = tmp / f"{driver}-{django}"
        shutil.rmtree(project, ignore_errors=True)
        session.run(
            "cookiecutter",
            ".",
            "--no-input",
            "-o",
            str(project),
            f"database_driver={driver}",
            f"django_version={django}",
            f"python_version={python}",
        )
        compile_ = f"uv pip compile pyproject.toml --universal --python-version {python}"
        for kind, options in LOCKS.items():
            command = f"{compile_} {options}"
            output = f"{kind}.lock"  # its name in the bake (hooks/post_gen_project.py)
            lock_file = locks / f"{kind}-{driver}-django{django}.lock"
            with session.chdir(project / "my_service"):
                session.run(
                    *command.split(),
                    "--quiet",
                    "--custom-compile-command",
                    f"{command} -o {output}",
                    "-o",
                    str(lock_file),
                )
            # The lock is rendered with the project: name the baked project, not my-service.
            lock_file.write_text(
                lock_file.read_text().replace("my-service (", f"{PROJECT_DIST_NAME} (")
            )
