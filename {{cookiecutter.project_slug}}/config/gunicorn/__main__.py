"""Start gunicorn with a preset: `python -m config.gunicorn [gunicorn options]`.

GUNICORN_PRESET names the preset: sync, gthread, gevent or asgi (default
{{ cookiecutter.worker_model }}, chosen when the project was made). Options given here, and
GUNICORN_CMD_ARGS, override the preset's settings as they would with gunicorn.

The environment is checked first, by the same rules as the presets: gunicorn
reads WEB_CONCURRENCY before any configuration file, and stops with a traceback
on a value that is not a number. Here any bad value gets one line instead, and
so does a version the preset cannot run on (versions.py).
"""

import os
import shutil
import sys
from pathlib import Path

from config.gunicorn import versions
from config.gunicorn.environment import BadSetting, read_environment

DEFAULT_PRESET = "{{ cookiecutter.worker_model }}"
PRESETS = ("sync", "gthread", "gevent", "asgi")


def main():
    preset = os.environ.get("GUNICORN_PRESET", "").strip() or DEFAULT_PRESET
    if preset not in PRESETS:
        hint = " (gunicorn 26 removed the eventlet worker)" if preset == "eventlet" else ""
        sys.exit(f"GUNICORN_PRESET={preset!r} is not a preset{hint}: use {', '.join(PRESETS)}")
    try:
        read_environment()
        versions.require(preset)
    except (BadSetting, versions.UnsupportedVersion) as exc:
        sys.exit(str(exc))
    # Unset and empty mean the same here; to gunicorn an empty WEB_CONCURRENCY is not a number.
    if "WEB_CONCURRENCY" in os.environ and not os.environ["WEB_CONCURRENCY"].strip():
        del os.environ["WEB_CONCURRENCY"]
    # Preferably the gunicorn installed next to this Python, not the first one on PATH.
    python_bin = Path(sys.executable).parent
    gunicorn = shutil.which("gunicorn", path=python_bin) or shutil.which("gunicorn")
    if gunicorn is None:
        sys.exit(f"gunicorn is not installed for {sys.executable}: pip install gunicorn")
    config = Path(__file__).with_name(f"{preset}.py")
    os.execv(gunicorn, [gunicorn, "-c", str(config), *sys.argv[1:]])


if __name__ == "__main__":
    main()
