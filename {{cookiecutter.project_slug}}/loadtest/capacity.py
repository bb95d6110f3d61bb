"""Capacity: the highest throughput a row reached within the p99 objective, with no failure.

Read from whatever levels were run: those a capacity search chose (--capacity,
search.py), or the user counts and arrival rates asked for, in which case it is
only as high as the highest level that passed ("at least"). An open-model run
counts when the server kept up with what was offered (KEPT_UP of it), since
its latency counts from each request's scheduled start. Per CPU: over the CPU
budget the row sized itself from; per GiB: over its memory at that level.
"""

KEPT_UP = 0.95


def qualifies(row, slo_p99_ms):
    if row["error"] or row.get("skipped") or not row.get("rps"):
        return False
    kept_up = row["model"] == "closed" or row["rps"] >= KEPT_UP * row["offered_rps"]
    return row["failures"] == 0 and row["p99_ms"] <= slo_p99_ms and kept_up


def capacities(rows, slo_p99_ms, cpus_of):
    """{(preset, scenario): its capacity, a dict}; `cpus_of`: {preset: its CPU budget}."""
    found = {}
    for row in rows:
        key = (row["preset"], row["scenario"])
        if qualifies(row, slo_p99_ms) and row["rps"] > found.get(key, {}).get("rps", -1):
            found[key] = row
    searched = {(row["preset"], row["scenario"]) for row in rows if row.get("search_step")}
    return {
        key: {
            "preset": row["preset"],
            "scenario": row["scenario"],
            "rps": row["rps"],
            "p99_ms": row["p99_ms"],
            "model": row["model"],
            "load": row["load"],
            "users": row["users"],
            "offered_rps": row["offered_rps"],
            "searched": key in searched,
            "per_cpu": row["rps"] / cpus_of[row["preset"]] if cpus_of.get(row["preset"]) else None,
            "per_gib": row["rps"] / (row["memory_mib"] / 1024) if row.get("memory_mib") else None,
            "memory_mib": row.get("memory_mib"),
            "server_cpu": row.get("server_cpu"),
            "peak_db_connections": row.get("peak_db_connections"),
            "generator_bound": row.get("generator_bound", False),
        }
        for key, row in found.items()
    }


def describe(capacity):
    """'1,712 req/s at 200 users (p99 310 ms); 856 per CPU, 5,480 per GiB'."""
    text = f"{capacity['rps']:,.0f} req/s at {capacity['load']} (p99 {capacity['p99_ms']:,.0f} ms)"
    if not capacity["searched"]:
        text = "at least " + text
    extras = []
    if capacity["per_cpu"]:
        extras.append(f"{capacity['per_cpu']:,.0f} per CPU")
    if capacity["per_gib"]:
        extras.append(f"{capacity['per_gib']:,.0f} per GiB")
    return text + (f"; {', '.join(extras)}" if extras else "")
