"""What each scenario saw, counted one way for all: the table, and summary.json.

Every request a scenario counts ends in one of three columns:

- answered: the server sent its usual answer (a 2xx or 3xx status);
- failed: the server sent an HTTP error status (a 503 while the database is
  down, a 413 for a body too large). The client knows, and can retry or
  give up: failures are fine where the scenario forces them;
- lost: no answer at all. The connection was reset or closed without a
  response, or nothing came within the client's timeout. The client cannot
  tell whether its request ran: the goal is none, anywhere.

One exception, said in its row: slowloris against sync and gthread without a
proxy. Both are built to run behind a buffering proxy (deploy/nginx/): the
/healthz probes their stall leaves unanswered count as failed ("needs the
proxy"), and the same row through nginx must have none.

The rows count the clients that stand for everyone else. The requests that
make the failure are not counted: the slow connections of slowloris, the
long request of hung-request (which a sync worker's timeout is meant to
kill). Their fate is in the row's notes and details. large-body's one POST
is both, and is counted.

A row passes when every check of its scenario holds; the session exits 1
when one does not.
"""

import json
from dataclasses import asdict, dataclass, field

from rich.table import Table


@dataclass
class Check:
    expectation: str  # what the scenario requires, in words
    ok: bool
    seen: str  # what was measured


@dataclass
class Row:
    scenario: str
    preset: str
    # or "nginx": the project's front, deploy/nginx/; or "control": recycle without its leak
    via: str = "direct"
    sent: int = 0
    answered: int = 0
    failed: int = 0
    lost: int = 0
    recovery_s: float | None = None  # time until the server served normally again
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # the scenario's own measurements
    error: str | None = None  # the scenario could not run: a server did not start, say
    skipped: str | None = None  # why it did not run here

    @property
    def ok(self):
        return self.error is None and all(check.ok for check in self.checks)

    def check(self, expectation, ok, seen):
        self.checks.append(Check(expectation, bool(ok), seen))

    def count(self, outcomes, unanswered_is_failure=False):
        """Add `outcomes` to the columns. Requests never sent (refused) are in `details`."""
        for outcome in outcomes:
            if not outcome.sent:
                self.details["refused"] = self.details.get("refused", 0) + 1
                continue
            self.sent += 1
            if outcome.status is None:
                if unanswered_is_failure:
                    self.failed += 1
                else:
                    self.lost += 1
            elif outcome.status >= 400:
                self.failed += 1
            else:
                self.answered += 1

    def as_dict(self):
        return {**asdict(self), "ok": None if self.skipped else self.ok}


def in_seconds(value):
    return "-" if value is None else f"{value:.2f} s"


def result_cell(row):
    if row.skipped:
        return "[yellow]skipped[/yellow]"
    if row.error:
        return "[red]error[/red]"
    return "[green]ok[/green]" if row.ok else "[red]FAIL[/red]"


def notes_cell(row):
    if row.skipped:
        return row.skipped
    if row.error:
        return row.error
    return "; ".join(row.notes)


TITLE = "Resilience: every scenario against every preset"
CAPTION = (
    "answered: the usual answer; failed: an HTTP error status; "
    "lost: no answer (reset, closed, timed out)"
)


def table(rows):
    table = Table(title=TITLE, caption=CAPTION)
    for heading in ("scenario", "preset", "via"):
        table.add_column(heading)
    for heading in ("sent", "answered", "failed", "lost", "recovery s"):
        table.add_column(heading, justify="right")
    table.add_column("result")
    table.add_column("notes", overflow="fold")
    for row in rows:
        counts = [row.sent, row.answered, row.failed, row.lost]
        cells = [str(count) for count in counts]
        if row.lost:
            cells[-1] = f"[red]{row.lost}[/red]"
        table.add_row(
            row.scenario,
            row.preset,
            row.via,
            *(cells if not (row.skipped or row.error) else [""] * len(cells)),
            "" if row.recovery_s is None else f"{row.recovery_s:.2f}",
            result_cell(row),
            notes_cell(row),
        )
    return table


def print_report(console, rows, results):
    """The table, then each expectation that did not hold, in words."""
    console.print(table(rows))
    unmet = [
        f"{row.scenario} {row.preset} ({row.via}): expected {check.expectation}; saw {check.seen}"
        for row in rows
        if not row.skipped and not row.error
        for check in row.checks
        if not check.ok
    ]
    unmet += [f"{row.scenario} {row.preset} ({row.via}): {row.error}" for row in rows if row.error]
    if unmet:
        console.print("[bold red]Not as expected[/bold red]")
    for line in unmet:
        console.print(f"  {line}")
    console.print(f"Results: {results / 'summary.json'} (server logs beside it)")


def write_summary(path, summary, rows):
    """summary.json, rewritten after every row: an interrupted session keeps what it saw."""
    lost = sum(row.lost for row in rows)
    ok = all(row.ok for row in rows if not row.skipped)
    data = {**summary, "ok": ok, "lost": lost, "rows": [row.as_dict() for row in rows]}
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)
    return data
