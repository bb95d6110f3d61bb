"""The table of runs, as summary.md, the console and index.html show it, and the machine line."""

# Columns of the table, in summary.md and on the console: (heading, row key, format).
COLUMNS = (
    ("preset", "preset", "{}"),
    ("scenario", "scenario", "{}"),
    ("load", "load", "{}"),  # users (closed loop) or the rate offered (open model)
    ("req/s", "rps", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:,.0f}"),
    ("p95 ms", "p95_ms", "{:,.0f}"),
    ("p99 ms", "p99_ms", "{:,.0f}"),
    ("failed", "failures", "{:,}"),
    ("bound req/s", "bound_rps", "{:,.0f}"),
    ("bound by", "bound_limit", "{}"),
    ("efficiency", "efficiency", "{:.0%}"),
    # From the server's own metrics (/metrics on METRICS_PORT), the presets' rows only.
    ("server p99 ms", "server_p99_ms", "{:,.0f}"),
    ("peak saturation", "saturation_max", "{:.2f}"),
    ("pool wait p99 ms", "pool_wait_p99_ms", "{:,.0f}"),
    ("worker restarts", "worker_restarts", "{}"),
    ("peak db conns", "peak_db_connections", "{}"),
    ("busiest worker", "busiest_worker_share", "{:.0%}"),
    ("memory MiB", "memory_mib", "{:,.0f}"),
    ("server CPUs", "server_cpu", "{:.2f}"),
    ("generator CPUs", "generator_cpu", "{:.2f}"),
    ("note", "note", "{}"),
)


def cells(row):
    """The row's table cells, as text."""
    if row["error"] or row.get("skipped"):
        note = f"error: {row['error']}" if row["error"] else row["skipped"]
        return [str(row[key]) for _, key, _ in COLUMNS[:3]] + [""] * (len(COLUMNS) - 4) + [note]
    return [
        "" if row.get(key) is None else template.format(row[key]) for _, key, template in COLUMNS
    ]


def describe_machine(machine):
    server, generator = machine["server_cpus"], machine["generator_cpus"]
    if machine["shared_cpus"]:
        cpus = f"server and generator share CPUs {cpu_list(server)}"
    else:
        cpus = f"server on CPUs {cpu_list(server)}, generator on {cpu_list(generator)}"
    return (
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB; {cpus}; "
        f"Python {machine['python']}, "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
        + (f", {machine['database']}" if machine["database"] else "")
    )


def cpu_list(cpus):
    return ",".join(map(str, cpus)) if cpus else "all"
