"""Developer tasks: `nox -s tests`, `nox -s lint`. `nox -l` lists them all."""

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session):
    """Run the test suite (against PostgreSQL when DATABASE_URL is set)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session):
    """Lint and format-check the code{% if cookiecutter.use_docker %} and the Dockerfile{% endif %}."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
{%- if cookiecutter.use_docker %}
    session.run("hadolint", "Dockerfile")
{%- endif %}


@nox.session
def loadtest(session):
    """Load-test the gunicorn presets side by side with Locust: `nox -s loadtest -- --help`."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "loadtest", *session.posargs)
{%- if cookiecutter.include_demo_endpoints %}


@nox.session
def smoke(session):
    """Boot every gunicorn preset and call each endpoint once."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "loadtest.smoke")
{%- endif %}
