"""The kit on the lowest versions the generated project claims, and on the newest.

`nox -s versions` runs this module alone; `nox -s tests` runs it with the rest. Each
project is installed twice over: with uv's lowest-direct resolution (every direct
dependency at the lower bound of pyproject.toml's range, which for the kit's are
config/gunicorn/versions.py's minimums: Django 5.2.8, gunicorn 27.0.1, gevent 26.9,
uvloop 0.21, asgiref 3.13, psycopg 3.1.14 or psycopg2 2.9.10 with psycogreen 1.0.2) and with the
newest the index has (uv's default, highest). On each, the project's own test suite
passes on PostgreSQL with nothing skipped, and its smoke session boots every preset with
real gunicorn and calls every endpoint.
"""

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib

import pytest
from conftest import InstalledProject, bake
from test_generated_project import random_secret_key, run_project_tests

pytestmark = pytest.mark.slow

# (id, answers, resolution): both drivers at their lowest; the default bake at its newest.
INSTALLS = {
    "psycopg-lowest": ({}, "lowest-direct"),
    "psycopg2-lowest": ({"database_driver": "psycopg2"}, "lowest-direct"),
    "psycopg-highest": ({}, "highest"),
}
KIT_PACKAGES = ("django", "gunicorn", "gevent", "uvloop", "asgiref", "psycopg", "psycopg2-binary")


@pytest.fixture(scope="module", params=INSTALLS, ids=INSTALLS)
def resolved(request, tmp_path_factory, installed_project):
    """(resolution, project installed with it, seconds the install took)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed: run the tests through `nox -s tests`")
    answers, resolution = INSTALLS[request.param]
    if resolution == "highest":  # uv's default: the session's default install, shared
        started = time.monotonic()
        return resolution, installed_project(**answers), time.monotonic() - started
    workdir = tmp_path_factory.mktemp(request.param)
    project = bake(workdir, **answers)
    venv = workdir / "venv"
    started = time.monotonic()
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--resolution",
            resolution,
            "--python",
            str(venv / "bin" / "python"),
            "-e",
            f"{project}[dev]",
        ],
        check=True,
    )
    return resolution, InstalledProject(project, venv), time.monotonic() - started


def installed_versions(project):
    listing = subprocess.run(
        [shutil.which("uv"), "pip", "list", "--format", "json", "--python", project.bin("python")],
        capture_output=True,
        text=True,
        check=True,
    )
    return {item["name"].lower(): item["version"] for item in json.loads(listing.stdout)}


def floors(project):
    pyproject = tomllib.loads((project.path / "pyproject.toml").read_text(encoding="utf-8"))
    found = {}
    for requirement in pyproject["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_-]+", requirement)[0].lower()
        found[name] = re.search(r">=([\w.]+)", requirement)[1]
    return found


def as_tuple(version):
    """(5, 2, 0) for 5.2 and 5.2.0 alike."""
    parts = [int(part) for part in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def test_the_lowest_resolution_installs_each_lower_bound_and_the_highest_none_below(resolved):
    resolution, project, seconds = resolved
    versions = installed_versions(project)
    kit = {name: versions[name] for name in KIT_PACKAGES if name in versions}
    print(f"{resolution}: {kit} (installed in {seconds:.0f} s)")
    for name, floor in floors(project).items():
        if resolution == "lowest-direct":
            assert as_tuple(versions[name]) == as_tuple(floor), (name, versions[name], floor)
        else:
            assert as_tuple(versions[name]) >= as_tuple(floor), (name, versions[name], floor)


def test_the_projects_tests_pass_with_nothing_skipped(resolved, database_url, tmp_path):
    _, project, _ = resolved
    counts, skipped = run_project_tests(
        project,
        tmp_path,
        env={"DATABASE_URL": database_url, "DJANGO_SECRET_KEY": random_secret_key()},
    )
    assert skipped == {}, skipped
    assert counts["tests"] > 100


def test_every_preset_boots_and_serves_every_endpoint(resolved, database_url):
    _, project, _ = resolved
    result = project.run(
        project.bin("python"),
        "-m",
        "loadtest.smoke",
        env={"DATABASE_URL": database_url, "DJANGO_SECRET_KEY": random_secret_key()},
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for preset in ("sync", "gthread", "gevent", "asgi"):
        served = re.findall(rf"^{preset}\s+(/\S+)\s+200\b", output, flags=re.MULTILINE)
        assert "/healthz" in served and "/demo/db?ms=50" in served, output
    assert "Traceback" not in output


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_pip_finds_one_set_of_versions_for_the_dev_extra(tmp_path, driver):
    # The generated README installs with the pip of `python3 -m venv` (23.2 with Python
    # 3.11.7), whose resolver backtracks less than uv's or a newer pip's: a range over
    # OpenTelemetry's instrumentations (betas that require each other's own release)
    # resolved with those and made it give up once half of a release was out.
    project = bake(tmp_path, database_driver=driver)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--quiet"]
    result = subprocess.run(
        [*pip, "--report", "-", "-e", f"{project}[dev]"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(result.stdout)["install"]
    }
    instrumentations = {
        version for name, version in chosen.items() if name.startswith("opentelemetry-instr")
    }
    assert len(instrumentations) == 1, chosen
