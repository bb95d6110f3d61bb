"""Remove the files of options that were not chosen, write a local .env, say what next."""

import secrets
import shutil
from pathlib import Path

PROJECT_SLUG = {{ cookiecutter.project_slug | tojson }}
DATABASE_DRIVER = {{ cookiecutter.database_driver | tojson }}
DJANGO_VERSION = {{ cookiecutter.django_version | tojson }}
USE_DOCKER = {{ "True" if cookiecutter.use_docker else "False" }}
INCLUDE_DEMO_ENDPOINTS = {{ "True" if cookiecutter.include_demo_endpoints else "False" }}

DOCKER_FILES = ["Dockerfile", "compose.yaml", ".dockerignore", "deploy/kubernetes"]
# The load test stays (it runs your own Locust file); its demo scenarios and smoke test go,
# and the resilience session with them.
DEMO_FILES = [
    f"{PROJECT_SLUG}/demo",
    "tests/test_demo.py",
    "tests/test_loadtest_report.py",
    "tests/data",
    "loadtest/demo.py",
    "loadtest/locustfile.py",
    "loadtest/open_model.py",
    "loadtest/smoke.py",
    # Every failure scenario runs against the demo endpoints.
    "resilience",
]


def remove(relative_paths):
    for relative in relative_paths:
        path = Path(relative)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def keep_locks_of_chosen_options():
    """The locks of this driver and Django: requirements.lock (the image's), requirements-dev.lock."""
    chosen = f"{DATABASE_DRIVER}-django{DJANGO_VERSION}"
    kept = {
        f"requirements-{chosen}.lock": "requirements.lock",
        f"requirements-dev-{chosen}.lock": "requirements-dev.lock",
    }
    for lock in Path("locks").glob("*.lock"):
        if lock.name in kept:
            lock.rename(kept[lock.name])
    shutil.rmtree("locks")


def write_local_env():
    """A fresh secret per bake: never shared between projects, never committed."""
    env_file = Path(".env")
    if env_file.exists():
        return
    lines = [
        "# Local development only; .gitignore keeps this file out of git.",
        f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}",
        "DJANGO_DEBUG=true",
    ]
    if USE_DOCKER:
        # compose's PostgreSQL; letters and digits only, since it goes into DATABASE_URL.
        lines.append(f"POSTGRES_PASSWORD={secrets.token_hex(16)}")
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env_file.chmod(0o600)


def main():
    if not USE_DOCKER:
        remove(DOCKER_FILES)
    if not INCLUDE_DEMO_ENDPOINTS:
        remove(DEMO_FILES)
    keep_locks_of_chosen_options()
    write_local_env()
    print(
        f"\n{PROJECT_SLUG} is ready. Next steps:\n"
        f"  cd {PROJECT_SLUG}\n"
        "  python3 -m venv .venv && . .venv/bin/activate\n"
        "  python -m pip install -e '.[dev]'\n"
        "  python manage.py migrate && python manage.py runserver\n"
        "  nox -s tests lint\n"
        "README.md explains the gunicorn presets and how to pick one.\n"
    )


if __name__ == "__main__":
    main()
