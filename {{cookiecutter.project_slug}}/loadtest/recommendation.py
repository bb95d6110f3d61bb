"""Which preset to run, per scenario: the most throughput within the p99 objective, no failures.

Of every preset's runs (the baseline's excepted: it is what you get without a
preset), those with zero failed requests and a p99 within the objective
qualify; the one with the most requests per second wins, at whatever user count
it reached them. Each recommendation says what it is sized as, what it costs in
memory per 100 requests/s, why it won, and what the baseline gave instead.
"""

from .server import BASELINE


def recommend(rows, slo_p99_ms):
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    return [recommend_for(scenario, rows, slo_p99_ms) for scenario in scenarios]


def qualifies(row, slo_p99_ms):
    return (
        not row["error"] and row["rps"] > 0 and row["failures"] == 0 and row["p99_ms"] <= slo_p99_ms
    )


def best_of_each_preset(rows, slo_p99_ms):
    """{preset: its qualifying run with the most requests/s}, best preset first."""
    best = {}
    for row in rows:
        if qualifies(row, slo_p99_ms) and row["rps"] > best.get(row["preset"], {}).get("rps", -1):
            best[row["preset"]] = row
    return dict(sorted(best.items(), key=lambda item: -item[1]["rps"]))


def recommend_for(scenario, rows, slo_p99_ms):
    rows = [row for row in rows if row["scenario"] == scenario]
    presets = [row for row in rows if row["preset"] != BASELINE]
    ranked = best_of_each_preset(presets, slo_p99_ms)
    recommendation = {
        "scenario": scenario,
        "preset": None,
        "baseline": baseline_text(rows, slo_p99_ms),
    }
    if not ranked:
        recommendation["text"] = no_winner_text(presets, slo_p99_ms)
        return recommendation
    winner, *others = ranked.values()
    memory = winner["memory_mib"] / winner["rps"] * 100
    recommendation.update(
        preset=winner["preset"],
        users=winner["users"],
        rps=winner["rps"],
        p99_ms=winner["p99_ms"],
        sizing=winner["sizing"],
        memory_per_100_rps_mib=memory,
    )
    text = (
        f"{winner['preset']} ({winner['sizing']}; {memory:,.1f} MiB per 100 req/s): "
        f"{winner['rps']:,.0f} req/s at {winner['users']} users, p99 {winner['p99_ms']:,.0f} ms "
        f"within {slo_p99_ms:,.0f} ms, no failures; {efficiency_text(winner)}"
    )
    if others:
        text += f"; next: {others[0]['preset']} at {others[0]['rps']:,.0f} req/s"
    recommendation["text"] = text
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
    measured = [row for row in rows if not row["error"]]
    if not measured:
        return "no preset was measured: see the errors in the table"
    fastest = min(measured, key=lambda row: (row["failures"] > 0, row["p99_ms"]))
    return (
        f"no preset kept p99 within {slo_p99_ms:,.0f} ms without failures at any user count; "
        f"closest: {fastest['preset']} at {fastest['users']} users, "
        f"p99 {fastest['p99_ms']:,.0f} ms, {fastest['failures']:,} failed: "
        "test fewer users or relax --slo-p99"
    )


def baseline_text(rows, slo_p99_ms):
    baseline = [row for row in rows if row["preset"] == BASELINE and not row["error"]]
    if not baseline:
        return "baseline: not measured"
    best = best_of_each_preset(baseline, slo_p99_ms).get(BASELINE)
    if best is not None:
        return (
            f"baseline ({best['sizing']}): {best['rps']:,.0f} req/s at {best['users']} users, "
            f"p99 {best['p99_ms']:,.0f} ms"
        )
    busiest = max(baseline, key=lambda row: row["rps"])
    return (
        f"baseline ({busiest['sizing']}): within the objective at no user count; "
        f"{busiest['rps']:,.0f} req/s at {busiest['users']} users with p99 "
        f"{busiest['p99_ms']:,.0f} ms and {busiest['failures']:,} failed"
    )
