"""The instance's metrics directory: fresh at each start, and no file left by a dead worker.

prometheus_client's multiprocess mode keeps each process's values in files named
after its pid (counter_1234.db, histogram_1234.db, gauge_livesum_1234.db). A
worker that ends leaves its files behind: its counts must stay in the totals
(else the instance's counters go backwards), and a worker recycled every minute
would leave 2,880 files a day for each scrape to read. So when the master reaps a
worker (`retire`), it adds the worker's counters and histograms into one archive
file per type, removes the worker's files, and drops its live gauges
(prometheus_client's mark_process_dead): after 100 recycles the directory holds
the live workers' files and two archives. The metrics server reads the directory
under a shared lock, `retire` writes under an exclusive one, so that no scrape
sees a worker's counts twice or not at all.

Where: PROMETHEUS_MULTIPROC_DIR if set (emptied at start), else a directory of
this instance's own in /dev/shm (memory, writable under a read-only root) named
after the master's pid; directories of masters that are gone (killed with -9)
are removed at the next start.
"""

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "gunicorn-metrics-"
LOCK_NAME = "lock"
ARCHIVED_TYPES = ("counter", "histogram")
# The reason a worker gave for ending, as its own counter holds it (metrics.Worker.exited).
EXIT_COUNTER = "gunicorn_worker_exits_total"


def prepare(environ=os.environ):
    """The instance's directory, created (or emptied) now; PROMETHEUS_MULTIPROC_DIR names it."""
    chosen = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if chosen:
        directory = Path(chosen)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        parent = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
        remove_orphans(parent)
        directory = parent / f"{PREFIX}{os.getpid()}"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o700)
    environ[ENVIRONMENT_VARIABLE] = str(directory)
    return directory


def remove_orphans(parent):
    """Directories of instances whose master is gone (named after its pid)."""
    for directory in parent.glob(f"{PREFIX}*"):
        pid = directory.name.removeprefix(PREFIX)
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


@contextlib.contextmanager
def locked(directory, exclusive):
    with open(Path(directory) / LOCK_NAME, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def retire(directory, pid):
    """Fold the files of worker `pid`, which has ended, into the archives; True if it said why.

    False: the worker ended without recording a reason (killed, or it crashed).
    """
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    directory = Path(directory)
    said_why = False
    with locked(directory, exclusive=True):
        for kind in ARCHIVED_TYPES:
            source = directory / f"{kind}_{pid}.db"
            if not source.exists():
                continue
            if source.stat().st_size:  # else killed as it created the file: nothing recorded
                archive = MmapedDict(str(directory / f"{kind}_archive.db"))
                try:
                    for key, value, _time, _position in MmapedDict.read_all_values_from_file(
                        str(source)
                    ):
                        said_why = said_why or (EXIT_COUNTER in key and value > 0)
                        total, _ = archive.read_value(key)
                        archive.write_value(key, total + value, 0.0)
                finally:
                    archive.close()
            source.unlink()
        multiprocess.mark_process_dead(pid, str(directory))
    return said_why


def recorded(directory):
    """The directory's files with something in them: what a scrape reads.

    prometheus_client creates a process's file, then sizes it. A scrape in between
    read 0 bytes and failed whole (struct.error: prometheus/client_python#1199, open
    in 0.26), and a worker killed in between left its empty file to fail every later
    scrape: most likely why a scrape in CI ended without an answer, as 110 workers were
    recycled and two killed with -9.
    """
    return [str(path) for path in Path(directory).glob("*.db") if path.stat().st_size]


def archive_counter(directory, key_of, amount=1.0):
    """Add `amount` to a counter in the archive: for what the master counts (a killed worker)."""
    from prometheus_client.mmap_dict import MmapedDict

    with locked(directory, exclusive=True):
        archive = MmapedDict(str(Path(directory) / "counter_archive.db"))
        try:
            total, _ = archive.read_value(key_of)
            archive.write_value(key_of, total + amount, 0.0)
        finally:
            archive.close()


def remove(directory):
    shutil.rmtree(directory, ignore_errors=True)
