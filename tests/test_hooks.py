"""Bad answers are refused before anything is written, with one line that says what to type.

These run the real `cookiecutter` command, as a user would. When a hook exits non-zero,
cookiecutter 2.7.1 itself prints a notice to stdout after ours: the line
"ERROR: Stopping generation because pre_gen_project hook script didn't exit successfully",
a traceback of its own hooks.py ending in FailedHookException, and
"Hook script failed (exit status: 1)". It cannot be switched off from the template, so
the tests check that our line comes first and that the rest is exactly that notice.

Values outside a choice list never reach the hooks: cookiecutter rejects them while
reading the answers, with a traceback of its own that ends in a ValueError listing
the choices. A replay file skips that check, so there our hook is the safety net.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR, bake
from cookiecutter.exceptions import FailedHookException

_SCRIPT = Path(sys.executable).with_name("cookiecutter")
COOKIECUTTER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cookiecutter"]

UPSTREAM_FIRST_LINE = (
    "ERROR: Stopping generation because pre_gen_project hook script didn't exit successfully"
)
UPSTREAM_LAST_LINES = [
    "cookiecutter.exceptions.FailedHookException: Hook script failed (exit status: 1)",
    "Hook script failed (exit status: 1)",
]

# (answers, what our first line must say): the field, the problem, and what to type instead.
BAD_ANSWERS = {
    "slug-not-identifier": (
        {"project_slug": "my-service"},
        ["project_slug 'my-service'", "not a lowercase Python identifier", "try 'my_service'"],
    ),
    "slug-uppercase": (
        {"project_slug": "MyService"},
        ["project_slug 'MyService'", "not a lowercase Python identifier", "try 'myservice'"],
    ),
    "slug-leading-digit": (
        {"project_slug": "1service"},
        ["project_slug '1service'", "no leading digit", "try 'service_1service'"],
    ),
    "slug-keyword": (
        {"project_slug": "class"},
        ["project_slug 'class'", "Python keyword", "try 'class_service'"],
    ),
    "slug-shadows-django": (
        {"project_slug": "django"},
        ["project_slug 'django'", "would shadow", "try 'django_service'"],
    ),
    "slug-shadows-gunicorn": (
        {"project_slug": "gunicorn"},
        ["project_slug 'gunicorn'", "would shadow", "try 'gunicorn_service'"],
    ),
    "slug-shadows-gevent": (
        {"project_slug": "gevent"},
        ["project_slug 'gevent'", "would shadow", "try 'gevent_service'"],
    ),
    "slug-stdlib-test": (
        {"project_slug": "test"},
        ["project_slug 'test'", "standard library", "try 'test_service'"],
    ),
    "slug-stdlib-site": (
        {"project_slug": "site"},
        ["project_slug 'site'", "standard library", "try 'site_service'"],
    ),
    "slug-own-config-package": (
        {"project_slug": "config"},
        ["project_slug 'config'", "the project's own", "try 'config_service'"],
    ),
    "slug-own-loadtest-package": (
        {"project_slug": "loadtest"},
        ["project_slug 'loadtest'", "the project's own", "try 'loadtest_service'"],
    ),
    "email-without-at": (
        {"email": "bob"},
        ["email 'bob'", "not an email address", "try 'you@example.com'"],
    ),
    "email-without-domain": (
        {"email": "bob@localhost"},
        ["email 'bob@localhost'", "not an email address", "try 'you@example.com'"],
    ),
    "name-with-quote": (
        {"project_name": "Bob's Service"},
        ['project_name "Bob\'s Service"', "use letters, digits and spaces"],
    ),
    "name-with-double-quote": (
        {"project_name": 'The "Best" Service'},
        ["project_name 'The \"Best\" Service'", "use letters, digits and spaces"],
    ),
    "name-empty": (
        {"project_name": ""},
        ["project_name is empty", "e.g. 'Billing API'"],
    ),
    "name-blank": (
        {"project_name": "   "},
        ["project_name is empty", "e.g. 'Billing API'"],
    ),
    "django-6-on-python-3.11": (
        {"django_version": "6.1", "python_version": "3.11"},
        [
            "django_version '6.1' needs Python 3.12 or later, and python_version is '3.11'",
            "choose python_version 3.12, 3.13, or django_version 5.2",
        ],
    ),
}


def run_cookiecutter(tmp_path, *args):
    """The CLI with a private home (no user config, replay files land in tmp_path).

    stdout and stderr are merged, in the order a terminal would show them.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "COOKIECUTTER_CONFIG"}
    env["HOME"] = str(home)
    result = subprocess.run(
        [*COOKIECUTTER, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout.splitlines()


def refused(tmp_path, *args):
    """Run a bake expected to fail in the pre-gen hook; return our lines, check the rest."""
    output = tmp_path / "out"
    output.mkdir()
    returncode, lines = run_cookiecutter(tmp_path, *args, "-o", str(output))
    shown = "\n".join(lines)
    assert returncode == 1, shown
    assert list(output.iterdir()) == [], "a refused bake left files behind"
    assert UPSTREAM_FIRST_LINE in lines, shown
    start = lines.index(UPSTREAM_FIRST_LINE)
    ours, notice = lines[:start], lines[start:]
    assert ours, f"our hook printed nothing before cookiecutter's notice:\n{shown}"
    assert all(line.startswith("ERROR: ") for line in ours), shown
    assert_only_the_upstream_notice(notice)
    return ours


def assert_only_the_upstream_notice(notice):
    """cookiecutter's fixed notice, with a traceback through its own code and nothing of ours."""
    shown = "\n".join(notice)
    assert notice[1] == "Traceback (most recent call last):", shown
    assert notice[-2:] == UPSTREAM_LAST_LINES, shown
    for line in notice[2:-2]:
        if line.startswith("  File "):
            assert f"{os.sep}cookiecutter{os.sep}" in line, f"a frame outside cookiecutter: {line}"
        else:
            assert line.startswith("    "), f"unexpected line in the notice: {line}"


def context_args(answers):
    return [f"{key}={value}" for key, value in answers.items()]


@pytest.mark.parametrize(("answers", "expected"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_bad_answer_is_refused_with_one_clear_line(tmp_path, answers, expected):
    ours = refused(tmp_path, "--no-input", str(TEMPLATE_DIR), *context_args(answers))
    first = ours[0]
    for fragment in expected:
        assert fragment in first, first
    assert "Traceback" not in first


def test_every_problem_is_reported_at_once(tmp_path):
    ours = refused(
        tmp_path,
        "--no-input",
        str(TEMPLATE_DIR),
        *context_args({"project_slug": "class", "email": "nobody"}),
    )
    assert [line.split()[1] for line in ours] == ["project_slug", "email"]


def test_api_bake_raises_and_the_hook_prints_only_our_line(tmp_path, capfd):
    """Through cookiecutter's Python API (what conftest's `bake` uses)."""
    with pytest.raises(FailedHookException, match=r"Hook script failed \(exit status: 1\)"):
        bake(tmp_path, project_slug="gunicorn")
    ours = (
        "ERROR: project_slug 'gunicorn' would shadow the module of the same name "
        "(standard library, a dependency, or the project's own): try 'gunicorn_service'"
    )
    # The hook's stderr; cookiecutter's own notice goes to its logger (captured by pytest).
    lines = capfd.readouterr().err.splitlines()
    assert lines[0] == ours
    assert [line for line in lines if line.startswith("ERROR: ")] == [ours]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            "worker_model=eventlet",
            "ValueError: eventlet provided for choice variable worker_model, "
            "but the choices are ['gthread', 'sync', 'gevent', 'asgi'].",
        ),
        (
            "database_driver=mysqlclient",
            "ValueError: mysqlclient provided for choice variable database_driver, "
            "but the choices are ['psycopg', 'psycopg2'].",
        ),
        (
            "python_version=3.10",
            "ValueError: 3.10 provided for choice variable python_version, "
            "but the choices are ['3.11', '3.12', '3.13'].",
        ),
        (
            "django_version=5.1",
            "ValueError: 5.1 provided for choice variable django_version, "
            "but the choices are ['5.2', '6.1'].",
        ),
        (
            "use_docker=maybe",
            "ValueError: maybe provided for variable use_docker could not be converted "
            "to a boolean.",
        ),
    ],
)
def test_bad_choice_is_refused_by_cookiecutter_before_the_hooks(tmp_path, answer, message):
    """Upstream behaviour, pinned: a traceback of cookiecutter's own ending in the choices."""
    output = tmp_path / "out"
    output.mkdir()
    returncode, lines = run_cookiecutter(
        tmp_path, "--no-input", str(TEMPLATE_DIR), answer, "-o", str(output)
    )
    assert returncode == 1
    assert lines[-1] == message
    assert list(output.iterdir()) == []
    assert not any(line.startswith("ERROR: ") for line in lines), "the hooks ran"


def test_replay_file_cannot_smuggle_in_an_unsupported_worker_model(tmp_path):
    """--replay-file skips cookiecutter's choice check: the pre-gen hook still refuses."""
    first_bake = tmp_path / "first"
    first_bake.mkdir()
    returncode, lines = run_cookiecutter(
        tmp_path, "--no-input", str(TEMPLATE_DIR), "-o", str(first_bake)
    )
    assert returncode == 0, "\n".join(lines)
    (replay,) = (tmp_path / "home" / ".cookiecutter_replay").glob("*.json")
    context = json.loads(replay.read_text(encoding="utf-8"))
    context["cookiecutter"]["worker_model"] = "eventlet"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(context), encoding="utf-8")

    ours = refused(tmp_path, "--replay-file", str(edited), str(TEMPLATE_DIR))
    assert ours == [
        "ERROR: worker_model 'eventlet' is not supported (gunicorn 26 removed the eventlet "
        "worker; gevent covers the same workloads): choose one of sync, gthread, gevent, asgi"
    ]


@pytest.mark.parametrize(
    ("answers", "slug"),
    [
        ({"project_name": "Billing API"}, "billing_api"),
        ({"project_name": "Order-Service 2"}, "order_service_2"),
        ({"project_name": "Shop", "project_slug": "shop_backend"}, "shop_backend"),
    ],
)
def test_good_names_are_accepted(tmp_path, answers, slug):
    project = bake(tmp_path, **answers)
    assert project.name == slug
    assert (project / slug / "apps.py").is_file()
