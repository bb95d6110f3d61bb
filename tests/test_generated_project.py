"""Install generated projects and run their own tools: test suite, deployment checks, lint.

Installs are cached per set of answers for the whole session (conftest's
`installed_project`), so the default project is installed once for everything here.
"""

import secrets
import shutil
import string
import subprocess
import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.slow

# Settings read these; none may leak in from the shell running the template's tests.
SECRET_KEY_CHARACTERS = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"

# (id, answers): the other driver on the newest Python. The default bake (psycopg, Python
# 3.11) runs its suite on PostgreSQL in test_versions.py, as its newest resolution: the same
# install, which this module shares.
POSTGRES_BAKES = {
    "psycopg2-py3.13": {"database_driver": "psycopg2", "python_version": "3.13"},
}


def random_secret_key():
    """Like Django's get_random_secret_key(): 50 characters, so `check --deploy` accepts it."""
    return "".join(secrets.choice(SECRET_KEY_CHARACTERS) for _ in range(50))


def require_python(version):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed: run the tests through `nox -s tests`")
    found = subprocess.run([uv, "python", "find", version], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(
            f"Python {version} is not installed (uv python find {version} failed); "
            "with pyenv, set PYENV_VERSION=3.11.7:3.12.1:3.13.0"
        )


def run_project_tests(project, tmp_path, env):
    """The project's own pytest run; returns (outcome counts, {skipped test: reason})."""
    report = tmp_path / "junit.xml"
    result = project.run(
        project.bin("python"),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        env=env,
    )
    output = result.stdout + result.stderr
    assert report.exists(), output
    suite = ET.parse(report).getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    skipped = {
        f"{case.get('classname')}.{case.get('name')}": case.find("skipped").get("message")
        for case in suite.iter("testcase")
        if case.find("skipped") is not None
    }
    assert result.returncode == 0, output
    assert counts["tests"] > 0, output
    assert counts["failures"] == counts["errors"] == 0, output
    return counts, skipped


@pytest.mark.parametrize("answers", POSTGRES_BAKES.values(), ids=POSTGRES_BAKES.keys())
def test_project_tests_pass_on_postgres_with_nothing_skipped(
    installed_project, database_url, tmp_path, answers
):
    require_python(answers.get("python_version", "3.11"))
    project = installed_project(**answers)
    counts, skipped = run_project_tests(
        project,
        tmp_path,
        env={"DATABASE_URL": database_url, "DJANGO_SECRET_KEY": random_secret_key()},
    )
    assert skipped == {}, skipped
    assert counts["skipped"] == 0


def test_project_tests_pass_on_sqlite_skipping_only_the_database_outage(
    installed_project, tmp_path
):
    project = installed_project()
    # Set, or the project's tests would find or bring a PostgreSQL (its devdb.py).
    sqlite = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    _, skipped = run_project_tests(
        project, tmp_path, env={"DJANGO_SECRET_KEY": random_secret_key(), "DATABASE_URL": sqlite}
    )
    errors = "tests.test_database_errors.test_"
    assert sorted(skipped) == [
        *(
            f"{errors}a_database_that_cannot_be_used_now_is_a_503_and_one_warning[{failure}]"
            for failure in ("pool-exhausted", "unreachable")
        ),
        *(
            f"{errors}an_error_of_the_request_is_a_500_that_reaches_error_reporting[{failure}]"
            for failure in ("deadlock", "lock-timeout", "serialization", "statement-timeout")
        ),
        "tests.test_probes.test_readyz_answers_within_its_own_bound_when_the_database_never_answers",
        "tests.test_probes.test_readyz_is_503_when_the_database_is_down_and_tells_only_the_log_why",
    ], skipped
    probes = [reason for test, reason in skipped.items() if "test_probes" in test]
    assert all("needs a database server" in reason for reason in probes)


def test_production_settings_pass_the_deployment_checklist(installed_project):
    project = installed_project()
    result = project.run(
        project.bin("python"),
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": random_secret_key()},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_lint_session_passes_with_the_projects_own_tools(installed_project):
    """The project's `nox -s lint`, run in its installed venv (its ruff, its hadolint).

    --no-venv --no-install: the session's commands run as written, with the tools
    the project pins, without nox building a second virtualenv.
    """
    project = installed_project()
    result = project.run(project.bin("nox"), "--no-venv", "--no-install", "-s", "lint")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for command in ("ruff check .", "ruff format --check .", "hadolint Dockerfile"):
        assert f"nox > {command}" in output, output
    # Every overlay rendered and checked against the Kubernetes schemas, or the base alone
    # where neither kustomize nor kubectl is installed (.ci/run installs kustomize).
    checked = "passed for resource deployment/my-service"
    overlays = ("sync", "gthread", "gevent", "asgi")
    if shutil.which("kustomize") or shutil.which("kubectl"):
        for overlay in overlays:
            assert f"{overlay}.yaml passed for resource deployment/my-service" in output, output
    else:
        assert checked in output, output
    assert "Session lint was successful" in output, output
