"""Start a gunicorn preset as a real process, wait until it serves, stop it cleanly."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PRESETS = ("sync", "gthread", "gevent", "asgi")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(base_url, process, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f} s")


@contextmanager
def running_preset(preset, log_path, extra_env=None):
    """Yield the base URL of `preset` served on a free local port; SIGTERM it afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_PRESET": preset,
        "PORT": str(port),
        "DJANGO_DEBUG": "false",
        "DJANGO_DEMO_ENDPOINTS": "true",
        **(extra_env or {}),
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "config.gunicorn", "--bind", f"127.0.0.1:{port}"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_serving(base_url, process)
            yield base_url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
