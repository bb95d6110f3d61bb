"""Which preset to run, per scenario: the highest capacity (capacity.py), no failures.

Of the presets' rows (not the rows they are compared with: baseline, stock,
granian), the one with the highest capacity (the most requests/s of a level
within the p99 objective, with no failed request) wins, at whatever load it
reached it. Each recommendation says what it is sized as, its capacity per CPU
and per GiB, its memory per 100 requests/s, why it won, and what the rows it is
compared with gave: its own worker class with stock gunicorn, granian, the
baseline. For the io-async scenario it speaks to async views.
"""

from .capacity import capacities, describe, qualifies
from .server import BASELINE, GRANIAN, PRESETS, stock_of

ASYNC_SCENARIO = "io-async"


def recommend(rows, slo_p99_ms, found=None):
    if found is None:
        found = capacities(rows, slo_p99_ms, {})
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    return [recommend_for(scenario, rows, slo_p99_ms, found) for scenario in scenarios]


def best_of_each_preset(rows, slo_p99_ms):
    """{preset: its qualifying run with the most requests/s}, best preset first."""
    best = {}
    for row in rows:
        if qualifies(row, slo_p99_ms) and row["rps"] > best.get(row["preset"], {}).get("rps", -1):
            best[row["preset"]] = row
    return dict(sorted(best.items(), key=lambda item: -item[1]["rps"]))


def recommend_for(scenario, rows, slo_p99_ms, found):
    rows = [row for row in rows if row["scenario"] == scenario]
    presets = [row for row in rows if row["preset"] in PRESETS]
    ranked = best_of_each_preset(presets, slo_p99_ms)
    recommendation = {"scenario": scenario, "preset": None}
    if not ranked:
        recommendation["text"] = no_winner_text(presets, slo_p99_ms)
        recommendation["compared"] = compared_text(None, rows, slo_p99_ms, found)
        return recommendation
    winner, *others = ranked.values()
    memory = winner["memory_mib"] / winner["rps"] * 100
    capacity = found.get((winner["preset"], scenario))
    recommendation.update(
        preset=winner["preset"],
        users=winner["users"],
        load=winner["load"],
        rps=winner["rps"],
        p99_ms=winner["p99_ms"],
        sizing=winner["sizing"],
        memory_per_100_rps_mib=memory,
    )
    capacity_text = describe(capacity) if capacity else f"{winner['rps']:,.0f} req/s"
    text = (
        f"{winner['preset']} ({winner['sizing']}; {memory:,.1f} MiB per 100 req/s): "
        f"{capacity_text} within {slo_p99_ms:,.0f} ms, no failures; {efficiency_text(winner)}"
    )
    if others:
        text += f"; next: {others[0]['preset']} at {others[0]['rps']:,.0f} req/s"
    if scenario == ASYNC_SCENARIO:
        text = f"for async views (async def): {text}"
    recommendation["text"] = text
    recommendation["compared"] = compared_text(winner["preset"], rows, slo_p99_ms, found)
    return recommendation


def efficiency_text(row):
    text = (
        f"{row['efficiency']:.0%} of its bound "
        f"({row['bound_rps']:,.0f} req/s, by {row['bound_limit']})"
    )
    if row["generator_bound"]:
        text += "; the load generator was the limit: the server could do more"
    return text


def no_winner_text(rows, slo_p99_ms):
    measured = [row for row in rows if not row["error"] and not row.get("skipped")]
    if not measured:
        return "no preset was measured: see the errors in the table"
    fastest = min(measured, key=lambda row: (row["failures"] > 0, row["p99_ms"]))
    return (
        f"no preset kept p99 within {slo_p99_ms:,.0f} ms without failures at any load; "
        f"closest: {fastest['preset']} at {fastest['load']}, "
        f"p99 {fastest['p99_ms']:,.0f} ms, {fastest['failures']:,} failed: "
        "test a lighter load or relax --slo-p99"
    )


def compared_text(winner, rows, slo_p99_ms, found):
    """What the winner's stock worker class, granian and the baseline gave, one line each."""
    names = [f"stock-{winner}"] if winner else []
    names += [row["preset"] for row in rows if stock_of(row["preset"]) and not winner]
    names += [GRANIAN, BASELINE]
    texts = []
    for name in dict.fromkeys(names):
        measured = [row for row in rows if row["preset"] == name and not row["error"]]
        if not measured:
            continue
        capacity = found.get((name, measured[0]["scenario"]))
        sizing = measured[0]["sizing"]
        if capacity is not None:
            texts.append(f"{name} ({sizing}): {describe(capacity)}")
            continue
        ran = [row for row in measured if not row.get("skipped")]
        if not ran:
            texts.append(f"{name} ({sizing}): {measured[0]['skipped']}")
            continue
        busiest = max(ran, key=lambda row: row["rps"])
        texts.append(
            f"{name} ({sizing}): within the objective at no load; "
            f"{busiest['rps']:,.0f} req/s at {busiest['load']} with p99 "
            f"{busiest['p99_ms']:,.0f} ms and {busiest['failures']:,} failed"
        )
    return texts
