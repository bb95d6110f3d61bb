"""summary.png: throughput and p99 latency against users, a line per preset, the bound drawn in.

One row of two plots per scenario. A preset's bound is its dashed line, in its
colour: the gap between the two is what the preset leaves on the table. The
p99 plot is logarithmic (queues make latencies span orders of magnitude) and
shows the objective the recommendation respects.
"""

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened

import matplotlib.pyplot as plt

WIDTH_IN, ROW_HEIGHT_IN, DPI = 12, 3.6, 100


def draw(summary, path):
    rows = [row for row in summary["rows"] if not row["error"]]
    scenarios = list(dict.fromkeys(row["scenario"] for row in summary["rows"]))
    presets = list(dict.fromkeys(row["preset"] for row in summary["rows"]))
    users = sorted({row["users"] for row in summary["rows"]})
    figure, axes = plt.subplots(
        len(scenarios), 2, figsize=(WIDTH_IN, ROW_HEIGHT_IN * len(scenarios)), squeeze=False
    )
    for (throughput, latency), scenario in zip(axes, scenarios, strict=True):
        for number, preset in enumerate(presets):
            runs = sorted(
                (row for row in rows if row["scenario"] == scenario and row["preset"] == preset),
                key=lambda row: row["users"],
            )
            if not runs:
                continue
            x = [row["users"] for row in runs]
            colour = f"C{number}"
            throughput.plot(x, [row["rps"] for row in runs], "o-", color=colour, label=preset)
            throughput.plot(x, [row["bound_rps"] for row in runs], "--", color=colour, alpha=0.5)
            latency.plot(x, [row["p99_ms"] for row in runs], "o-", color=colour, label=preset)
        latency.axhline(
            summary["options"]["slo_p99_ms"], color="red", linestyle=":", label="p99 objective"
        )
        throughput.set(title=f"{scenario}: requests/s (dashed: bound)", ylabel="requests/s")
        latency.set(title=f"{scenario}: p99 latency", ylabel="ms", yscale="log")
        for plot in (throughput, latency):
            plot.set_xlabel("users")
            plot.set_xticks(users, [str(count) for count in users])
            if len(users) > 1:
                plot.set_xscale("log")
                plot.set_xticks(users, [str(count) for count in users])
                plot.minorticks_off()
            plot.grid(alpha=0.3)
        throughput.set_ylim(bottom=0)
        latency.legend(fontsize="small", loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
