"""Build and run the generated project's image in tests: Docker if a daemon answers, else podman.

Standard library only. Used by test_containers.py::

    engine = detect_engine(tmp_path_factory.mktemp("engine"))   # raises EngineUnavailable(reason)
    ensure_base_image(engine, "python:3.11-slim-bookworm")        # podman: builds the stand-in
    image = build_image(engine, project_dir, "my_service:test")
    with run_container(engine, image, env={"PORT": "8123", ...}) as container:
        wait_for_http("http://127.0.0.1:8123/healthz", container=container)
        assert container.stop(timeout=30) == 0

Why podman needs so much care here: the machines this template is tested on have no Docker
daemon and no Docker Hub, only package registries behind a TLS-intercepting proxy. So podman
runs as root with its own throw-away storage and configuration (never /etc/containers), and the
``python:3.11-slim-bookworm`` base is replaced by a *stand-in* made locally with debootstrap
from Debian's own Python 3.11 (see ``ensure_stand_in_base_image``). The stand-in is not the
official image: Python lives in /usr/bin (``python`` via python-is-python3), not /usr/local/bin,
and it trusts the machine's extra CA certificates so that pip in a build reaches the registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Bumped whenever the stand-in recipe below changes, so cached tarballs are not reused.
STAND_IN_RECIPE_VERSION = "1"
STAND_IN_SUITE = "bookworm"
STAND_IN_PYTHON = "3.11"  # what Debian bookworm ships; other versions cannot be stood in
STAND_IN_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python-is-python3",
    "ca-certificates",
)
STAND_IN_LABEL = "stand-in.python-base.recipe"
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class ContainerError(RuntimeError):
    """An engine command failed; the message carries the command and the tail of its output."""


class EngineUnavailable(RuntimeError):
    """No usable engine; str() is a reason meant for ``pytest.skip``."""


class StandInUnavailable(EngineUnavailable):
    """The stand-in base image cannot be made (wrong Python version, no debootstrap, ...)."""


# --------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class Engine:
    """Which CLI to call (``docker`` or ``podman``) and the environment it must run with.

    The environment matters for podman: it points at the private storage and configuration
    written by ``podman_environment``; every call below passes it.
    """

    cli: str
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def is_podman(self) -> bool:
        return self.cli == "podman"

    def run(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``<cli> args...``; with ``check``, failing raises ContainerError with the output."""
        env = {**self.env, **(extra_env or {})}
        return _run([self.cli, *args], env=env, timeout=timeout, check=check)


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output, and an error that shows what went wrong."""
    try:
        result = subprocess.run(
            list(argv),
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ContainerError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and result.returncode != 0:
        output = f"{_tail(result.stdout)}\n{_tail(result.stderr)}"
        raise ContainerError(f"exit {result.returncode}: {' '.join(argv)}\n{output}")
    return result


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


def detect_engine(workdir: str | os.PathLike[str]) -> Engine:
    """A reachable Docker daemon first (what developers and CI elsewhere have), else root podman.

    ``workdir`` holds podman's private storage and configuration (a pytest tmp dir is right:
    nothing outlives the session). Raises EngineUnavailable with a reason for ``pytest.skip``.
    """
    reasons = []
    if shutil.which("docker"):
        if _run(["docker", "info"], timeout=30, check=False).returncode == 0:
            return Engine("docker", dict(os.environ))
        reasons.append("`docker info` fails (no reachable Docker daemon)")
    else:
        reasons.append("no docker CLI")
    reason = _podman_unusable_reason()
    if reason is None:
        engine = Engine("podman", podman_environment(workdir))
        info = engine.run("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60, check=False)
        if info.returncode == 0:
            return engine
        reason = f"`podman info` fails: {_tail(info.stderr, 5)}"
    reasons.append(reason)
    raise EngineUnavailable("no container engine: " + "; ".join(reasons))


def _podman_unusable_reason() -> str | None:
    """Why root podman cannot be used here, or None (rootless podman is not set up here)."""
    if not shutil.which("podman"):
        return "no podman (apt-get install -y podman buildah runc)"
    if os.geteuid() != 0:
        return "podman is only set up to run as root here"
    if not shutil.which("runc"):
        return "no runc (podman_environment configures runc)"
    return None


def podman_environment(tmpdir: str | os.PathLike[str]) -> dict[str, str]:
    """Environment for root podman with private storage and config under ``tmpdir``.

    Why each setting:
    - overlay storage with its own runroot/graphroot: isolated from /var/lib/containers,
      removed with the tmp dir.
    - runtime runc: the runtime installed here; crun was found failing on this cgroup v1 setup.
    - cgroup_manager cgroupfs, events_logger file: there is no systemd to talk to.
    - default_ulimits: without them runc fails at start ("error setting rlimit type 7:
      operation not permitted"): podman's default nofile exceeds root's hard limit here.
    - tmp_dir and lock_type "file": podman's per-boot state and its locks live in ``tmpdir``
      too. The default shm locks are one segment (/dev/shm/libpod_lock) shared by every
      podman on the machine; a deleted tmp dir would leak the locks of what it left behind.
    """
    root = Path(tmpdir).resolve()
    for sub in ("run", "storage", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    storage_conf = root / "storage.conf"
    storage_conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'runroot = "{root / "run"}"\n'
        f'graphroot = "{root / "storage"}"\n',
        encoding="utf-8",
    )
    nofile = _hard_nofile_limit()
    containers_conf = root / "containers.conf"
    containers_conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'tmp_dir = "{root / "tmp"}"\n'
        'lock_type = "file"\n',
        encoding="utf-8",
    )
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(storage_conf),
        "CONTAINERS_CONF": str(containers_conf),
    }


def _hard_nofile_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1048576 if hard == resource.RLIM_INFINITY else hard


# --------------------------------------------------------------------------- base images


def ensure_base_image(engine: Engine, tag: str) -> None:
    """Make ``FROM tag`` resolvable: Docker pulls it itself; podman here gets the local stand-in."""
    if engine.is_podman:
        ensure_stand_in_base_image(engine.env, tag)


def ensure_stand_in_base_image(
    env: Mapping[str, str], tag: str = "python:3.11-slim-bookworm"
) -> str:
    """Import the stand-in base as ``tag`` in podman's storage (env); return its image id.

    Idempotent: an image already tagged so and made by the same recipe is kept (about 0.1 s);
    else the cached tarball is imported (seconds); else it is built first (debootstrap, ~80 s).
    A stand-in, not the official image: see the module docstring.
    """
    engine = Engine("podman", env)
    reference = _fully_qualified(tag)
    _require_stand_in_python(reference)
    key = _stand_in_key()
    current = engine.run(
        "image",
        "inspect",
        "--format",
        f'{{{{.Id}}}} {{{{index .Labels "{STAND_IN_LABEL}"}}}}',
        reference,
        check=False,
    )
    if current.returncode == 0 and current.stdout.split()[1:] == [key]:
        return current.stdout.split()[0]
    tarball = stand_in_tarball(key)
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
        f"LABEL {STAND_IN_LABEL}={key}",
        "LABEL stand-in.note=debian-bookworm-python3.11-not-the-official-python-image",
    ]
    argv = ["import", "--quiet"]
    for change in changes:
        argv += ["--change", change]
    image_id = (
        engine.run(*argv, str(tarball), reference, timeout=600).stdout.strip().splitlines()[-1]
    )
    return image_id.removeprefix("sha256:")


def _fully_qualified(tag: str) -> str:
    """``python:3.11`` -> ``docker.io/library/python:3.11``: what FROM's short name resolves to."""
    first = tag.split("/", 1)[0]
    if "/" in tag and ("." in first or ":" in first or first == "localhost"):
        return tag
    return f"docker.io/{tag}" if "/" in tag else f"docker.io/library/{tag}"


def _require_stand_in_python(reference: str) -> None:
    match = re.search(r"/python:(\d+\.\d+)", reference)
    if not match or match.group(1) != STAND_IN_PYTHON or STAND_IN_SUITE not in reference:
        raise StandInUnavailable(
            f"the stand-in only replaces python:{STAND_IN_PYTHON}-*-{STAND_IN_SUITE} "
            f"(Debian {STAND_IN_SUITE}'s Python), not {reference}"
        )


def stand_in_cache_dir() -> Path:
    """Where built stand-in tarballs are kept between runs (XDG cache, clearly named)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stand-in-python-base-image"


def _stand_in_key() -> str:
    """Changes when the recipe, the mirror or the machine's extra CA certificates change."""
    digest = hashlib.sha256()
    for part in (STAND_IN_RECIPE_VERSION, STAND_IN_SUITE, *STAND_IN_PACKAGES, _debian_mirror()):
        digest.update(part.encode() + b"\0")
    for cert in _local_ca_certificates():
        digest.update(cert.name.encode() + b"\0" + cert.read_bytes())
    return digest.hexdigest()[:16]


def stand_in_tarball(key: str | None = None) -> Path:
    """The cached rootfs tarball of the stand-in, built once under a file lock (safe with xdist)."""
    key = key or _stand_in_key()
    cache = stand_in_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"python{STAND_IN_PYTHON}-{STAND_IN_SUITE}-stand-in-{key}.tar"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            _build_stand_in_tarball(tarball)
    return tarball


def _build_stand_in_tarball(tarball: Path) -> None:
    if not shutil.which("debootstrap"):
        raise StandInUnavailable(
            "no debootstrap to make the stand-in base (apt-get install -y debootstrap)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    try:
        rootfs = workdir / "rootfs"
        _debootstrap(rootfs)
        _trust_local_certificates(rootfs)
        _slim(rootfs)
        partial = workdir / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], timeout=600)
        partial.replace(tarball)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _debootstrap(rootfs: Path) -> None:
    """Minimal Debian with Python 3.11; ``nice`` because other work shares the machine's CPUs."""
    _run(
        [
            "nice",
            "-n",
            "10",
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(STAND_IN_PACKAGES),
            STAND_IN_SUITE,
            str(rootfs),
            _debian_mirror(),
        ],
        timeout=1800,
    )


def _trust_local_certificates(rootfs: Path) -> None:
    """Builds must reach the registry through the same TLS-intercepting proxy as the host.

    The CA certificates go into the system bundle. Debian's own pip (and the pip a venv gets
    from it) already uses that bundle; /etc/pip.conf makes a pip upgraded from PyPI, which
    trusts only its vendored certifi list, use it too.
    """
    target = rootfs / LOCAL_CA_DIR.relative_to("/")
    target.mkdir(parents=True, exist_ok=True)
    for cert in _local_ca_certificates():
        shutil.copy2(cert, target / cert.name)
    _run(["chroot", str(rootfs), "update-ca-certificates", "--fresh"], timeout=300)
    (rootfs / "etc/pip.conf").write_text(f"[global]\ncert = {SYSTEM_CA_BUNDLE}\n", encoding="utf-8")


def _slim(rootfs: Path) -> None:
    """Drop what a -slim image does not carry either: apt caches, docs, man pages."""
    for pattern in (
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()


def _debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), not the security one."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8", errors="replace")
        for uri in re.findall(r"^URIs:\s*(\S+)", text, flags=re.MULTILINE) + re.findall(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", text, flags=re.MULTILINE
        ):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def _local_ca_certificates() -> list[Path]:
    return sorted(LOCAL_CA_DIR.rglob("*.crt")) if LOCAL_CA_DIR.is_dir() else []


# --------------------------------------------------------------------------- images


def build_image(
    engine: Engine,
    context_dir: str | os.PathLike[str],
    tag: str,
    *,
    dockerfile: str | os.PathLike[str] | None = None,
    build_args: Mapping[str, str] | None = None,
    timeout: float = 1200,
) -> str:
    """Build ``context_dir`` (its Dockerfile unless ``dockerfile``) as ``tag``; return the image id.

    podman: ``--pull=never`` so FROM uses the local stand-in instead of asking Docker Hub,
    ``--network host`` so RUN steps reach the registry exactly as the host does (and no bridge
    network or firewall rule is set up), ``--format docker`` so HEALTHCHECK is kept as Docker
    keeps it (the OCI format drops it). Proxy variables of the host are passed as build args.
    """
    with tempfile.TemporaryDirectory(prefix="iid-") as tmp:
        iidfile = Path(tmp) / "iid"
        argv = ["build", "-t", tag, "--iidfile", str(iidfile)]
        if engine.is_podman:
            argv += ["--pull=never", "--network", "host", "--format", "docker"]
        if dockerfile is not None:
            argv += ["-f", str(dockerfile)]
        args = {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}
        for name, value in {**args, **(build_args or {})}.items():
            argv += ["--build-arg", f"{name}={value}"]
        engine.run(*argv, str(context_dir), timeout=timeout)
        return iidfile.read_text(encoding="utf-8").strip().removeprefix("sha256:")


def image_size(engine: Engine, image: str) -> int:
    """Uncompressed size in bytes, as ``image inspect`` reports it (all layers, base included)."""
    return int(engine.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def remove_image(engine: Engine, image: str) -> None:
    """Remove an image by id or tag; a missing image is not an error."""
    engine.run("rmi", "-f", image, check=False)


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class Container:
    """A container started by ``run_container``; its id is all the engine needs."""

    engine: Engine
    id: str

    def inspect(self) -> dict:
        return json.loads(self.engine.run("inspect", "--type", "container", self.id).stdout)[0]

    def is_running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def exit_code(self) -> int:
        return int(self.inspect()["State"]["ExitCode"])

    def logs(self) -> str:
        result = self.engine.run("logs", self.id, check=False)
        return result.stdout + result.stderr

    def exec(
        self, *argv: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside as the image's USER."""
        return self.engine.run("exec", self.id, *argv, timeout=timeout, check=check)

    def process_uids(self) -> dict[str, int]:
        """``"pid name" -> real uid`` of every process in the container (except the probe itself).

        Read from /proc inside, so it shows the uid the server really runs as, not only what
        the image's USER says. Needs python in the image (every image here has it).
        """
        probe = (
            "import os\n"
            "me = str(os.getpid())\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    if pid == me: continue\n"
            "    try: status = open(f'/proc/{pid}/status').read()\n"
            "    except OSError: continue\n"
            "    fields = dict(line.split(':', 1) for line in status.splitlines() if ':' in line)\n"
            "    print(pid, fields['Name'].strip(), fields['Uid'].split()[0])\n"
        )
        output = self.exec("python", "-c", probe).stdout
        return {
            f"{pid} {name}": int(uid)
            for pid, name, uid in (line.split() for line in output.splitlines())
        }

    def healthcheck(self) -> bool:
        """Run the image's HEALTHCHECK once, now; True when it passes.

        podman schedules health checks with systemd timers; without systemd (these machines)
        it only logs an error at start and never runs them, so tests run them explicitly.
        Docker has no such command: its test command is run with exec instead.
        """
        if self.engine.is_podman:
            return self.engine.run("healthcheck", "run", self.id, check=False).returncode == 0
        test = (self.inspect()["Config"].get("Healthcheck") or {}).get("Test") or []
        if not test or test[0] == "NONE":
            raise ContainerError(f"container {self.id} has no health check")
        argv = test[1:] if test[0] == "CMD" else ["sh", "-c", *test[1:]]
        return self.exec(*argv, check=False).returncode == 0

    def stop(self, timeout: int = 30) -> int:
        """Stop gracefully (SIGTERM, SIGKILL after ``timeout`` s); return the exit code."""
        self.engine.run("stop", "-t", str(timeout), self.id, timeout=timeout + 60)
        return self.exit_code()

    def remove(self) -> None:
        """Force-remove (killing it if needed); a container already gone is not an error."""
        self.engine.run("rm", "-f", "-v", self.id, timeout=120, check=False)


@contextlib.contextmanager
def run_container(
    engine: Engine,
    image: str,
    *,
    env: Mapping[str, str] | None = None,
    network: str = "host",
    args: Sequence[str] = (),
    command: Sequence[str] = (),
) -> Iterator[Container]:
    """Start ``image`` detached (host network by default) and always remove it by id on exit.

    Values of ``env`` are handed over through the engine's own environment (``-e NAME``), so
    secrets never show on a command line. Host networking: the service reaches PostgreSQL on
    127.0.0.1 and its port is reachable without port mapping or bridge setup.
    """
    env = dict(env or {})
    argv = ["run", "--detach", "--network", network]
    for name in env:
        argv += ["-e", name]
    started = engine.run(*argv, *args, image, *command, extra_env=env, timeout=180)
    container = Container(engine, started.stdout.strip().splitlines()[-1])
    try:
        yield container
    finally:
        container.remove()


def wait_for_http(url: str, *, timeout: float = 20, container: Container | None = None) -> int:
    """Poll ``url`` until it answers; return the status (4xx/5xx count as answers).

    With ``container`` it fails at once, logs included, when the container stops: a
    crash-looping server (gunicorn restarting workers) is reported by the timeout message,
    which carries the logs too.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        if container is not None and not container.is_running():
            raise ContainerError(
                f"container exited before {url} answered:\n{_tail(container.logs())}"
            )
        time.sleep(0.25)
    logs = f"\n{_tail(container.logs())}" if container is not None else ""
    raise ContainerError(f"{url} did not answer within {timeout}s ({last_error}){logs}")


# --------------------------------------------------------------------------- pods (podman)


def kube_play(
    engine: Engine, manifest: str | os.PathLike[str], *, network: str = "host"
) -> list[str]:
    """``podman kube play`` a manifest; return the ids of the pods it made (remove with remove_pod).

    ``--network host`` by default, as for run_container: no bridge network or firewall rules.
    The pod's infra container uses podman's own locally built pause image (catatonit), so
    nothing is pulled.
    """
    if not engine.is_podman:
        raise EngineUnavailable("kube play needs podman")
    try:
        output = engine.run("kube", "play", "--network", network, str(manifest), timeout=300).stdout
    except ContainerError:
        kube_down(engine, manifest)  # a half-played manifest leaves no pod behind
        raise
    pods, section = [], None
    for line in output.splitlines():
        line = line.strip()
        if line.endswith(":"):
            section = line[:-1]
        elif section == "Pod" and re.fullmatch(r"[0-9a-f]{64}", line):
            pods.append(line)
    return pods


def kube_down(engine: Engine, manifest: str | os.PathLike[str]) -> None:
    """``podman kube down``: remove what the manifest names (by name; prefer remove_pod by id)."""
    engine.run("kube", "down", str(manifest), timeout=120, check=False)


def remove_pod(engine: Engine, pod_id: str) -> None:
    """Force-remove a pod and its containers by id; a pod already gone is not an error."""
    engine.run("pod", "rm", "-f", pod_id, timeout=120, check=False)


@contextlib.contextmanager
def kube_played(
    engine: Engine, manifest: str | os.PathLike[str], *, network: str = "host"
) -> Iterator[list[str]]:
    """kube_play as a context manager: the pods are removed by id on exit, even on failure."""
    pods = kube_play(engine, manifest, network=network)
    try:
        yield pods
    finally:
        for pod in pods:
            remove_pod(engine, pod)
