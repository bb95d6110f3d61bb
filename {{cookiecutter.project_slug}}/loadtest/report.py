"""Judge what a load test measured; write summary.json, summary.md, summary.png, index.html.

run.py measures (measurements.json, Locust's CSV files); this module judges:
each run's bound (bounds.py) and efficiency = measured ÷ bound, each row's
capacity (capacity.py), the recommendation (recommendation.py), the sizing for a
target rate and its Kustomize overlay (target.py, overlay.py), the chart
(chart.py) and the page (page.py). It reads only the results folder, so a
finished run can be judged again, against another objective or target, without
running any load:

    python -m loadtest.report [loadtest-results/latest] [--slo-p99 1s] [--target-rps 5000]
"""

import json
from pathlib import Path

from . import chart, overlay, page
from .bounds import Capacity, Cost, bound
from .capacity import capacities
from .generator import LocustError, read_stats
from .options import OneLineParser, latency, requests_per_second
from .recommendation import recommend
from .sampling import GENERATOR_BOUND_CPU, METRICS_WATCHER
from .server import PRESETS
from .sizing import Sizing
from .table import COLUMNS, cells, describe_machine
from .target import size_for


def write(results, slo_p99_ms=None, target_rps=None):
    """Judge the measurements in `results` and write the report files; the summary, as a dict."""
    results = Path(results)
    measurements = json.loads((results / "measurements.json").read_text())
    slo_p99_ms = slo_p99_ms or measurements["options"]["slo_p99_ms"]
    target_rps = target_rps or measurements["options"].get("target_rps")
    rows = judge(measurements, results)
    presets = {
        name: {
            "sizing": str(Sizing(**preset["sizing"])) if preset["sizing"] else None,
            "sizing_fields": preset["sizing"],
            "command": preset.get("command"),
            "startup_line": preset["startup_line"],
            "costs": preset["costs"],
            "error": preset["error"],
            "log": preset.get("log"),
        }
        for name, preset in measurements["presets"].items()
    }
    found = capacities(
        rows,
        slo_p99_ms,
        {name: p["sizing_fields"]["cpus"] for name, p in presets.items() if p["sizing_fields"]},
    )
    summary = {
        "started_at": measurements["started_at"],
        "finished_at": measurements.get("finished_at"),
        "machine": measurements["machine"],
        "database": measurements.get("database"),
        "options": {**measurements["options"], "slo_p99_ms": slo_p99_ms, "target_rps": target_rps},
        "memory_metric": memory_metric(rows),
        "skipped": measurements["skipped"],
        "upstream": measurements.get("upstream"),
        "presets": presets,
        "rows": rows,
        "capacities": list(found.values()),
    }
    summary["recommendations"] = recommend(rows, slo_p99_ms, found)
    summary["target"] = target_sizing(summary, found, measurements, results, target_rps)
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    (results / "summary.md").write_text(markdown(summary))
    chart.draw(summary, results / "summary.png")
    (results / "index.html").write_text(page.render(summary, results / "summary.png"))
    return summary


def target_sizing(summary, found, measurements, results, target_rps):
    """For each scenario, every preset's sizing for `target_rps`; the recommended one's overlay."""
    if not target_rps:
        return []
    sized = []
    for recommendation in summary["recommendations"]:
        scenario = recommendation["scenario"]
        for (preset, each), capacity in found.items():
            if each != scenario or preset not in PRESETS:
                continue  # the rows presets are compared with are not for deploying
            entry = summary["presets"][preset]
            mix = next(
                run["mix"]
                for run in measurements["runs"]
                if (run["preset"], run["scenario"]) == (preset, scenario) and run.get("mix")
            )
            entry = {**entry, "database_seconds_per_request": database_seconds(mix, entry["costs"])}
            result = size_for(target_rps, capacity, entry, summary["database"])
            result["recommended"] = preset == recommendation["preset"]
            if result["recommended"]:
                path = overlay.write(results, result)
                result["overlay"] = str(path.relative_to(results)) if path else None
            sized.append(result)
    return sized


def database_seconds(mix, costs):
    """Seconds a request of the mix [[weight, name]] holds a database connection, on average."""
    total = sum(weight for weight, _ in mix)
    return sum(
        weight / total * costs[name]["service_s"]
        for weight, name in mix
        if costs[name].get("uses_database")
    )


def cpu_taken_from_server(usage, shared_cpus):
    """CPU the server's CPUs gave to others during a run, in cores: the upstream's, which
    runs on them (/demo/upstream), and the generator's when it shares them (one CPU)."""
    taken = usage.get("upstream_cpu") or 0.0
    if shared_cpus:
        taken += usage["generator_cpu"] or 0.0
    return taken


def judge(measurements, results):
    """One row per run: what Locust and the sampler measured, its bound and efficiency."""
    shared_cpus = measurements["machine"]["shared_cpus"]
    rows = []
    for run in measurements["runs"]:
        preset = measurements["presets"].get(run["preset"], {})
        model = run.get("model", "closed")
        rate = run.get("arrival_rate")
        row = {
            "preset": run["preset"],
            "scenario": run["scenario"],
            "model": model,
            "users": run["users"],
            "offered_rps": rate,
            "load": load_text(run["users"], rate),
            "search_step": run.get("search_step"),
            "sizing": str(Sizing(**preset["sizing"])) if preset.get("sizing") else None,
            "error": run.get("error") or preset.get("error"),
            "skipped": run.get("skipped"),
            "locust_html": run.get("locust_html"),
        }
        rows.append(row)
        if row["skipped"]:
            row["error"] = None
            row["note"] = row["skipped"]
            continue
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
        server_cpu = usage["server_cpu"]  # None: the run was too short for two samples
        cpu_s_in_run = server_cpu / stats.rps if stats.rps and server_cpu is not None else None
        run_bound = bound(
            run["users"],
            mix,
            capacity,
            cpu_taken_from_server(usage, shared_cpus),
            cpu_s_in_run,
            offered_rps=rate,
        )
        generator_bound = (usage["busiest_generator_cpu"] or 0.0) >= GENERATOR_BOUND_CPU
        notes = ["generator-bound"] if generator_bound else []
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
            upstream_cpu=usage.get("upstream_cpu"),
            generator_bound=generator_bound,
            **server_side((usage.get("watched") or {}).get(METRICS_WATCHER) or {}),
        )
        if model == "open":
            arrivals = run["arrivals"]
            row.update(
                sent_rps=arrivals["sent"] / arrivals["seconds"] if arrivals["seconds"] else 0.0,
                late=arrivals["late"],
                unanswered=arrivals["sent"] - arrivals["answered"],
                max_lag_ms=arrivals["max_lag_ms"],
            )
            notes.append(
                f"open model: {row['sent_rps']:,.0f} req/s sent, {arrivals['late']:,} late, "
                f"{row['unanswered']:,} unanswered at the end"
            )
        row["note"] = ", ".join(notes)
    return rows


def server_side(figures):
    """The row's figures from the server's own metrics (the words an operator alerts on).

    Empty for the rows that export none: baseline, stock, granian.
    """
    if not figures or "error" in figures:
        return {}
    p99_s = figures["gunicorn_request_duration_seconds_p99"]
    pool_wait_s = figures["gunicorn_db_pool_wait_seconds_p99"]
    return {
        "server_p99_ms": None if p99_s is None else p99_s * 1000,
        "saturation_max": figures["gunicorn_saturation_max"],
        "pool_wait_p99_ms": None if pool_wait_s is None else pool_wait_s * 1000,
        "worker_restarts": int(figures["gunicorn_worker_boots_total"]),
    }


def load_text(users, rate):
    if rate is not None:
        return f"{rate:,g} req/s offered"
    return f"{users:,} users" if users is not None else ""


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
        lines += [f"  - {text}" for text in recommendation["compared"]]
    for skipped in summary["skipped"]:
        lines.append(f"- **{skipped['scenario']}**: skipped: {skipped['reason']}")
    if summary["target"]:
        lines += ["", f"## Sized for {summary['options']['target_rps']:,.0f} requests/s", ""]
        for sized in summary["target"]:
            mark = " (recommended)" if sized["recommended"] else ""
            lines.append(f"- **{sized['scenario']}**, {sized['preset']}{mark}: {sized['text']}")
            if sized.get("overlay"):
                lines.append(f"  - Kustomize overlay: `{sized['overlay']}`")
    lines += ["", "## Runs", ""]
    lines.append("| " + " | ".join(heading for heading, _, _ in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in summary["rows"]:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |")
    lines += ["", "## Presets", ""]
    for name, preset in summary["presets"].items():
        command = f" (`{preset['command']}`)" if preset.get("command") else ""
        lines.append(f"- **{name}**{command}: {preset['error'] or preset['sizing']}")
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
        for text in recommendation["compared"]:
            console.print(f"      {text}")
    for skipped in summary["skipped"]:
        console.print(f"  [yellow]{skipped['scenario']}: skipped: {skipped['reason']}")
    if summary["target"]:
        console.print(f"[bold]Sized for {summary['options']['target_rps']:,.0f} requests/s[/bold]")
        for sized in (each for each in summary["target"] if each["recommended"]):
            console.print(f"  [bold]{sized['scenario']}[/bold]: {sized['text']}")
            if sized.get("overlay"):
                console.print(f"      Kustomize overlay: {results / sized['overlay']}")
    console.print(f"Report: {results / 'index.html'}")


def main(argv=None):
    parser = OneLineParser(
        prog="python -m loadtest.report",
        description="Judge a finished load test again, against another p99 objective or "
        "target rate, without running any load.",
    )
    parser.add_argument("results", nargs="?", type=Path, default=Path("loadtest-results/latest"))
    parser.add_argument("--slo-p99", type=latency, help="the p99 objective, e.g. 500ms or 1s")
    parser.add_argument(
        "--target-rps", type=requests_per_second, help="the rate to size for, e.g. 5000"
    )
    options = parser.parse_args(argv)
    if not (options.results / "measurements.json").is_file():
        parser.error(f"{options.results} holds no measurements.json: run nox -s loadtest first")
    from .session import console

    summary = write(options.results, options.slo_p99, options.target_rps)
    print_summary(console, summary, options.results)


if __name__ == "__main__":
    main()
