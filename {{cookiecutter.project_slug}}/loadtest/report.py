"""Judge what a load test measured; write summary.json, summary.md, summary.png, index.html.

run.py measures (measurements.json, Locust's CSV files); this module judges:
each run's bound (bounds.py) and efficiency = measured ÷ bound, the
recommendation (recommendation.py), the chart (chart.py) and the page
(page.py). It reads only the results folder, so a finished run can be judged
again, against another latency objective:

    python -m loadtest.report [loadtest-results/latest] [--slo-p99 1s]
"""

import json
from pathlib import Path

from . import chart, page
from .bounds import Capacity, Cost, bound
from .generator import LocustError, read_stats
from .options import OneLineParser, latency
from .recommendation import recommend
from .sampling import GENERATOR_BOUND_CPU
from .sizing import Sizing
from .table import COLUMNS, cells, describe_machine


def write(results, slo_p99_ms=None):
    """Judge the measurements in `results` and write the four files; the summary, as a dict."""
    results = Path(results)
    measurements = json.loads((results / "measurements.json").read_text())
    slo_p99_ms = slo_p99_ms or measurements["options"]["slo_p99_ms"]
    rows = judge(measurements, results)
    summary = {
        "started_at": measurements["started_at"],
        "finished_at": measurements.get("finished_at"),
        "machine": measurements["machine"],
        "options": {**measurements["options"], "slo_p99_ms": slo_p99_ms},
        "memory_metric": memory_metric(rows),
        "skipped": measurements["skipped"],
        "presets": {
            name: {
                "sizing": str(Sizing(**preset["sizing"])) if preset["sizing"] else None,
                "startup_line": preset["startup_line"],
                "costs": preset["costs"],
                "error": preset["error"],
                "log": preset.get("log"),
            }
            for name, preset in measurements["presets"].items()
        },
        "rows": rows,
    }
    summary["recommendations"] = recommend(rows, slo_p99_ms)
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    (results / "summary.md").write_text(markdown(summary))
    chart.draw(summary, results / "summary.png")
    (results / "index.html").write_text(page.render(summary, results / "summary.png"))
    return summary


def judge(measurements, results):
    """One row per run: what Locust and the sampler measured, its bound and efficiency."""
    shared_cpus = measurements["machine"]["shared_cpus"]
    rows = []
    for run in measurements["runs"]:
        preset = measurements["presets"].get(run["preset"], {})
        row = {
            "preset": run["preset"],
            "scenario": run["scenario"],
            "users": run["users"],
            "sizing": str(Sizing(**preset["sizing"])) if preset.get("sizing") else None,
            "error": run.get("error") or preset.get("error"),
            "locust_html": run.get("locust_html"),
        }
        rows.append(row)
        if row["error"] or not run.get("usage"):
            row["error"] = row["error"] or "not measured: the session was interrupted"
            continue
        try:
            stats = read_stats(results / run["stats_csv"])
        except LocustError as exc:
            row["error"] = str(exc)
            continue
        usage = run["usage"]
        sizing = Sizing(**preset["sizing"])
        mix = [(weight, Cost(**preset["costs"][name])) for weight, name in run["mix"]]
        capacity = Capacity(sizing.slots, sizing.database_connections, sizing.cpus)
        generator_cpu = (usage["generator_cpu"] or 0.0) if shared_cpus else 0.0
        cpu_s_in_run = usage["server_cpu"] / stats.rps if stats.rps else None
        run_bound = bound(run["users"], mix, capacity, generator_cpu, cpu_s_in_run)
        generator_bound = (usage["busiest_generator_cpu"] or 0.0) >= GENERATOR_BOUND_CPU
        row.update(
            requests=stats.requests,
            rps=stats.rps,
            p50_ms=stats.p50_ms,
            p95_ms=stats.p95_ms,
            p99_ms=stats.p99_ms,
            failures=stats.failures,
            bound_rps=run_bound.rps,
            bound_limit=run_bound.limit,
            efficiency=run_bound.efficiency(stats.rps),
            peak_db_connections=usage["peak_db_connections"],
            busiest_worker_share=usage["busiest_worker_share"],
            rss_mib=usage["rss_mib"],
            pss_mib=usage["pss_mib"],
            memory_mib=usage["pss_mib"] or usage["rss_mib"],
            server_cpu=usage["server_cpu"],
            generator_cpu=usage["generator_cpu"],
            generator_bound=generator_bound,
            note="generator-bound" if generator_bound else "",
        )
    return rows


def memory_metric(rows):
    if any(row.get("pss_mib") for row in rows):
        return "PSS: the sum over master and workers; a page shared by N processes counts 1/N"
    return "RSS: the sum over master and workers (PSS is not available here)"


def markdown(summary):
    machine = summary["machine"]
    lines = [
        f"# Load test of {summary['started_at']}",
        "",
        f"Machine: {describe_machine(machine)}.",
        f"p99 objective: {summary['options']['slo_p99_ms']:g} ms. "
        f"Memory: {summary['memory_metric']}.",
        "",
        "## Recommendation",
        "",
    ]
    for recommendation in summary["recommendations"]:
        lines.append(f"- **{recommendation['scenario']}**: {recommendation['text']}")
        lines.append(f"  - {recommendation['baseline']}")
    for skipped in summary["skipped"]:
        lines.append(f"- **{skipped['scenario']}**: skipped: {skipped['reason']}")
    lines += ["", "## Runs", ""]
    lines.append("| " + " | ".join(heading for heading, _, _ in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in summary["rows"]:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |")
    lines += ["", "## Presets", ""]
    for name, preset in summary["presets"].items():
        lines.append(f"- **{name}**: {preset['error'] or preset['sizing']}")
    return "\n".join(lines) + "\n"


def print_summary(console, summary, results):
    """The recommendation, the table and where the report is, on the console."""
    from rich.table import Table

    table = Table(title="Load test: every run")
    for heading, _, _ in COLUMNS:
        table.add_column(
            heading, justify="left" if heading in ("preset", "scenario", "note") else "right"
        )
    for row in summary["rows"]:
        table.add_row(*cells(row), style="red" if row["error"] else None)
    console.print(table)
    console.print(f"Machine: {describe_machine(summary['machine'])}")
    console.print("[bold]Recommendation[/bold]")
    for recommendation in summary["recommendations"]:
        console.print(f"  [bold]{recommendation['scenario']}[/bold]: {recommendation['text']}")
        console.print(f"      {recommendation['baseline']}")
    for skipped in summary["skipped"]:
        console.print(f"  [yellow]{skipped['scenario']}: skipped: {skipped['reason']}")
    console.print(f"Report: {results / 'index.html'}")


def main(argv=None):
    parser = OneLineParser(
        prog="python -m loadtest.report",
        description="Judge a finished load test again, e.g. against another p99 objective.",
    )
    parser.add_argument("results", nargs="?", type=Path, default=Path("loadtest-results/latest"))
    parser.add_argument("--slo-p99", type=latency, help="the p99 objective, e.g. 500ms or 1s")
    options = parser.parse_args(argv)
    if not (options.results / "measurements.json").is_file():
        parser.error(f"{options.results} holds no measurements.json: run nox -s loadtest first")
    from rich.console import Console

    summary = write(options.results, options.slo_p99)
    print_summary(Console(), summary, options.results)


if __name__ == "__main__":
    main()
