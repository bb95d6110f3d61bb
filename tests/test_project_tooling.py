"""The generated project's tooling files: valid by their published schemas, and working.

- GitHub's workflow and Dependabot schemas, the Compose specification (all vendored by
  check-jsonschema, so the check runs offline), pre-commit's own validation;
- the pre-commit hooks run the locked ruff on a real git repository;
- the Content-Security-Policy every page carries lets the admin render: Chromium loads
  the login page from a real gunicorn and reports no violation.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import bake, free_port
from test_generated_project import random_secret_key

CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
SCHEMAS = {  # file of the bake: check-jsonschema's name for its published schema
    ".github/workflows/ci.yml": "vendor.github-workflows",
    ".github/dependabot.yml": "vendor.dependabot",
    "compose.yaml": "vendor.compose-spec",
}


@pytest.fixture(scope="module", params=[True, False], ids=["docker", "nodocker"])
def baked(request, tmp_path_factory):
    return request.param, bake(tmp_path_factory.mktemp("tooling"), use_docker=request.param)


@pytest.mark.parametrize("name", SCHEMAS)
def test_yaml_files_match_their_published_schemas(baked, name):
    use_docker, project = baked
    path = project / name
    if not path.exists():
        assert name == "compose.yaml" and not use_docker
        return
    result = subprocess.run(
        [*CHECK_JSONSCHEMA, "--builtin-schema", SCHEMAS[name], str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_pre_commit_config_is_valid(baked):
    _, project = baked
    result = subprocess.run(
        [*PRE_COMMIT, "validate-config", ".pre-commit-config.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_builds_the_image_and_runs_its_health_check(baked):
    use_docker, project = baked
    workflow = (project / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    assert ("docker build" in workflow) == use_docker
    assert ("python -m config.gunicorn.healthcheck" in workflow) == use_docker
    majors = dict(re.findall(r"uses: ([\w/-]+)@v(\d+)", workflow))
    # The current major versions (Dependabot keeps them so).
    assert majors == {"actions/checkout": "7", "actions/setup-python": "7"}, majors
    dependabot = (project / ".github/dependabot.yml").read_text(encoding="utf-8")
    ecosystems = set(re.findall(r"package-ecosystem: ([\w-]+)", dependabot))
    expected = {"pip", "github-actions"} | ({"docker", "docker-compose"} if use_docker else set())
    assert ecosystems == expected


@pytest.mark.slow
def test_pre_commit_runs_the_locked_ruff_on_a_commit(installed_project, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = installed_project()
    work = tmp_path / "repo"
    shutil.copytree(project.path, work, ignore=shutil.ignore_patterns(".env", "*.egg-info"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "--quiet"], cwd=work, check=True)
    (work / "badly_formatted.py").write_text("import os\nx = {  'a':1 }\n")
    subprocess.run([*git, "add", "."], cwd=work, check=True)
    env = {
        **os.environ,
        "PATH": f"{project.venv / 'bin'}:{os.environ['PATH']}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
    }

    def pre_commit():
        return subprocess.run(
            [project.bin("pre-commit"), "run", "--all-files"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = pre_commit()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # it found the unused import and fixed the format
    assert re.search(r"ruff check\.+Failed", output), output
    assert re.search(r"ruff format\.+Failed", output), output
    assert (work / "badly_formatted.py").read_text() == 'x = {"a": 1}\n'
    again = pre_commit()
    assert again.returncode == 0, again.stdout + again.stderr  # the rest of the bake is clean


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.parametrize("django_version", ["5.2", "6.1"])
def test_the_admin_renders_under_the_content_security_policy(
    installed_project, running_server, database_url, tmp_path, django_version
):
    if chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    answers = {"django_version": django_version}
    if django_version != "5.2":
        answers["python_version"] = "3.12"
    project = installed_project(**answers)
    env = {"DJANGO_SECRET_KEY": random_secret_key(), "DATABASE_URL": database_url}
    production = {**env, "DJANGO_DEBUG": "false", "DJANGO_SECURE_SSL_REDIRECT": "false"}
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        done = project.run(project.bin("python"), "manage.py", *command, env=production)
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "GUNICORN_", "WEB_CONCURRENCY", "PORT"))
    }
    with running_server(
        [project.bin("python"), "-m", "config.gunicorn"],
        cwd=project.path,
        env={
            **clean,
            **production,
            "PORT": str(port),
            "GUNICORN_PRESET": "gthread",
            "DJANGO_READ_DOT_ENV_FILE": "false",
        },
        port=port,
    ) as server:
        status, headers, _ = server.get("/admin/login/")
        policy = headers["Content-Security-Policy"]
        result = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=3000",
                "--dump-dom",
                f"{server.url}/admin/login/",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert status == 200
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy
    assert "Django administration" in result.stdout, result.stderr[-2000:]
    # The stylesheets loaded (a blocked one leaves the page unstyled, and says so on stderr).
    violations = [line for line in result.stderr.splitlines() if "Content Security Policy" in line]
    assert violations == [], "\n".join(violations)
    assert 'id="login-form"' in result.stdout
