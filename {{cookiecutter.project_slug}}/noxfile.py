"""Developer tasks: `nox -s tests`, `nox -s lint`. `nox -l` lists them all."""
{%- if cookiecutter.use_docker %}

import shutil
from pathlib import Path
{%- endif %}

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests"]
# On Ctrl-C, time for a session to stop what it started, devdb.py's PostgreSQL last, before
# nox would terminate it (after 0.3 s) and kill it (0.2 s later).
STOP_GRACE = {"interrupt_timeout": 60, "terminate_timeout": 10}


def install(session, extras="dev"):
    """The project and its `extras`, at the versions requirements-dev.lock names."""
    session.install("-c", "requirements-dev.lock", "-e", f".[{extras}]")


@nox.session
def tests(session):
    """Run the test suite, against PostgreSQL: DATABASE_URL's, or the one devdb.py brings."""
    install(session)
    session.run("pytest", *session.posargs, **STOP_GRACE)


@nox.session
def lint(session):
    """Lint and format-check the code{% if cookiecutter.use_docker %}, the Dockerfile and the Kubernetes manifests{% endif %}."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
{%- if cookiecutter.use_docker %}
    session.run("hadolint", "Dockerfile")
    session.run("kubernetes-validate", "--strict", *kubernetes_manifests(session))


KUBERNETES = Path("deploy/kubernetes")


def kubernetes_manifests(session):
    """Each overlay, rendered by kustomize or kubectl if either is installed; else the base."""
    render = next(
        (
            tool
            for tool in (["kustomize", "build"], ["kubectl", "kustomize"])
            if shutil.which(tool[0])
        ),
        None,
    )
    if render is None:
        session.warn("Neither kustomize nor kubectl is installed: the overlays are not checked")
        return [
            str(path)
            for path in (KUBERNETES / "base").glob("*.yaml")
            if path.name != "kustomization.yaml"
        ]
    rendered = Path(session.create_tmp()) / "kubernetes"
    rendered.mkdir(exist_ok=True)
    for overlay in sorted((KUBERNETES / "overlays").iterdir()):
        output = session.run(*render, str(overlay), silent=True, external=True)
        (rendered / f"{overlay.name}.yaml").write_text(output)
    return [str(path) for path in sorted(rendered.glob("*.yaml"))]
{%- endif %}


@nox.session
def loadtest(session):
    """Load-test the gunicorn presets side by side with Locust: `nox -s loadtest -- --help`.

    With the granian extra, for the row that compares them with a server written in Rust.
    """
    install(session, extras="dev,granian")
    session.run("python", "-m", "loadtest", *session.posargs, **STOP_GRACE)
{%- if cookiecutter.include_demo_endpoints %}


@nox.session
def smoke(session):
    """Boot every gunicorn preset and call each endpoint once."""
    install(session)
    session.run("python", "-m", "loadtest.smoke", **STOP_GRACE)


@nox.session
def resilience(session):
    """Break every gunicorn preset on purpose and count what is lost: `-- --help`."""
    install(session)
    session.run("python", "-m", "resilience", *session.posargs, **STOP_GRACE)
{%- endif %}
