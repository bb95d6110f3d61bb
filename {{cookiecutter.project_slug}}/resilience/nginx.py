"""The project's nginx front (deploy/nginx/), run on 127.0.0.1 in front of a preset.

The server block is deploy/nginx/default.conf as it is, but for its `listen`
address; upstream.conf is swapped for the preset's address, as its own comment
invites. Around both, the least nginx needs to run as an ordinary process:
its pid file, logs and temporary files in a folder of the results.
"""

import getpass
import os
import re
import shutil
import string
import time
from contextlib import contextmanager
from pathlib import Path

from loadtest import processes
from loadtest.server import PROJECT_DIR, free_port

from .clients import HOST, get
from .report import Row

NGINX_DIR = PROJECT_DIR / "deploy" / "nginx"
READY_TIMEOUT_S = 10.0
LISTEN = re.compile(r"^(\s*)listen\s+[^;]+;", flags=re.MULTILINE)
UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+[^;]+;", flags=re.MULTILINE)

MAIN_CONF = string.Template("""\
${user}worker_processes 1;
pid $folder/nginx.pid;
error_log $folder/error.log;

events {
    # held-connections holds 2,200 client connections at once, each with one upstream at most.
    worker_connections 8192;
}

http {
    access_log $folder/access.log;
    client_body_temp_path $folder/client_body;
    proxy_temp_path $folder/proxy;
    fastcgi_temp_path $folder/fastcgi;
    uwsgi_temp_path $folder/uwsgi;
    scgi_temp_path $folder/scgi;
    include $folder/upstream.conf;
    include $folder/default.conf;
}
""")


class NginxError(RuntimeError):
    """nginx did not start; str() is one line saying why."""


def unavailable():
    """Why nginx cannot front the presets here, in one line; None if it can."""
    if shutil.which("nginx") is None:
        return "nginx is not on PATH"
    missing = [
        name for name in ("default.conf", "upstream.conf") if not (NGINX_DIR / name).is_file()
    ]
    if missing:
        return f"no deploy/nginx/{missing[0]} in this project"
    return None


def listening_on(port):
    """default.conf, its first `listen` on 127.0.0.1:`port` and any other (IPv6) dropped."""
    server_block = (NGINX_DIR / "default.conf").read_text()
    first = LISTEN.search(server_block)
    if first is None:
        raise NginxError("deploy/nginx/default.conf has no listen directive")
    rest = LISTEN.sub("", server_block[first.end() :])
    return f"{server_block[: first.start()]}{first[1]}listen {HOST}:{port};{rest}"


def write_config(folder, listen_port, upstream_port):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.conf").write_text(listening_on(listen_port))
    upstream = (NGINX_DIR / "upstream.conf").read_text()
    (folder / "upstream.conf").write_text(
        UPSTREAM_SERVER.sub(rf"\g<1>server {HOST}:{upstream_port};", upstream)
    )
    # As root, nginx's workers would run as nobody, who may not enter the results folder.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(MAIN_CONF.substitute(user=user, folder=folder))
    return folder / "nginx.conf"


@contextmanager
def running_nginx(upstream_port, folder):
    """Yield the port of nginx in front of 127.0.0.1:`upstream_port`; stop it afterwards."""
    folder = Path(folder).resolve()
    port = free_port()
    config = write_config(folder, port, upstream_port)
    command = ["nginx", "-p", f"{folder}/", "-c", str(config), "-e", str(folder / "error.log")]
    with (
        open(folder / "nginx.out", "w") as output,
        processes.running(
            [*command, "-g", "daemon off;"], env=os.environ.copy(), stdout=output, grace=10.0
        ) as process,
    ):
        wait_until_ready(process, port, folder)
        yield port


def wait_until_ready(process, port, folder):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NginxError(f"nginx exited with {process.returncode}: {last_error(folder)}")
        if get(port, "/healthz", timeout=5).status == 200:
            return
        time.sleep(0.1)
    raise NginxError(
        f"nginx did not answer /healthz within {READY_TIMEOUT_S:.0f} s: {last_error(folder)}"
    )


def last_error(folder):
    lines = []
    for name in ("error.log", "nginx.out"):
        path = folder / name
        if path.is_file():
            lines += [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "no message")


def row_through_nginx(scenario, preset, server, context, measure):
    """The row of `scenario` with the project's nginx in front of `server`: measure(port, row)
    fills it in; skipped, with the reason, where nginx cannot run here."""
    reason = unavailable()
    if reason is not None:
        return Row(scenario, preset, via="nginx", skipped=reason)
    row = Row(scenario, preset, via="nginx")
    try:
        with running_nginx(server.port, context.results / f"nginx-{preset}") as port:
            return measure(port, row)
    except NginxError as exc:
        row.error = str(exc)
        return row
