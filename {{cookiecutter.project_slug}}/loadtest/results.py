"""Where a session's results go: <folder>/<timestamp>/, with <folder>/latest pointing at it."""

from datetime import UTC, datetime


def new_results_dir(parent):
    """A new `parent`/<timestamp>/ (-2, -3... if taken), and `parent`/latest pointing at it."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    parent.mkdir(exist_ok=True)
    for suffix in ("", *(f"-{number}" for number in range(2, 100))):
        results = parent / f"{stamp}{suffix}"
        try:
            results.mkdir()
            break
        except FileExistsError:
            continue
    # Replaced in one rename: a reader never finds `latest` missing.
    partial = parent / ".latest.partial"
    partial.unlink(missing_ok=True)
    partial.symlink_to(results.name, target_is_directory=True)
    partial.replace(parent / "latest")
    return results


def now():
    return datetime.now(UTC).isoformat(timespec="seconds")
