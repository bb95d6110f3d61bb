"""summary.png: throughput and p99 latency of every row, one row of two plots per scenario.

With one load level (--quick, say) there is one dot per preset: the plots are
bars, a bar per row, its bound a black tick on the throughput bar. With several
levels (a capacity search, several user counts or arrival rates) they are
curves against the load, a line per row in its colour, its bound dashed, and
each knee (the row's capacity: its best level within the objective) marked with
a star. Closed-loop and open-model runs of a scenario get rows of their own:
their loads (users, requests/s offered) are not on one axis. The p99 plot is
logarithmic (queues make latencies span orders of magnitude) and shows the
objective the recommendation respects.
"""

WIDTH_IN, ROW_HEIGHT_IN, DPI = 12, 3.6, 100


def groups(summary):
    """[(scenario, model)] in the order of the runs: one row of plots each."""
    return list(dict.fromkeys((row["scenario"], row["model"]) for row in summary["rows"]))


def draw(summary, path):
    # Imported here: matplotlib takes 0.9 s, which a bad option on the command line, checked
    # before anything runs, should not wait for.
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    rows = [row for row in summary["rows"] if not row["error"] and row.get("rps") is not None]
    presets = list(dict.fromkeys(row["preset"] for row in summary["rows"]))
    colours = {preset: f"C{number % 10}" for number, preset in enumerate(presets)}
    knees = {(c["preset"], c["scenario"], c["load"]) for c in summary.get("capacities", ())}
    plotted = groups(summary)
    figure, axes = plt.subplots(
        len(plotted), 2, figsize=(WIDTH_IN, ROW_HEIGHT_IN * len(plotted)), squeeze=False
    )
    for (throughput, latency), (scenario, model) in zip(axes, plotted, strict=True):
        runs = [row for row in rows if (row["scenario"], row["model"]) == (scenario, model)]
        loads = sorted({load_of(row) for row in runs})
        if len(loads) > 1:
            curves(throughput, latency, runs, colours, knees, loads, model)
        else:
            bars(throughput, latency, runs, colours)
        title = scenario if model == "closed" else f"{scenario}, open model"
        latency.axhline(
            summary["options"]["slo_p99_ms"], color="red", linestyle=":", label="p99 objective"
        )
        throughput.set(
            title=f"{title}: requests/s (bound: {'dashed' if len(loads) > 1 else 'tick'})",
            ylabel="requests/s",
        )
        latency.set(title=f"{title}: p99 latency", ylabel="ms", yscale="log")
        throughput.set_ylim(bottom=0)
        for plot in (throughput, latency):
            plot.grid(alpha=0.3)
        latency.legend(fontsize="small", loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def load_of(row):
    return row["users"] if row["model"] == "closed" else row["offered_rps"]


def curves(throughput, latency, runs, colours, knees, loads, model):
    for preset in dict.fromkeys(row["preset"] for row in runs):
        line = sorted((row for row in runs if row["preset"] == preset), key=load_of)
        x = [load_of(row) for row in line]
        colour = colours[preset]
        throughput.plot(x, [row["rps"] for row in line], "o-", color=colour, label=preset)
        throughput.plot(x, [row["bound_rps"] for row in line], "--", color=colour, alpha=0.5)
        latency.plot(x, [row["p99_ms"] for row in line], "o-", color=colour, label=preset)
        for row in line:
            if (row["preset"], row["scenario"], row["load"]) in knees:
                for plot, value in ((throughput, row["rps"]), (latency, row["p99_ms"])):
                    plot.plot(
                        load_of(row),
                        value,
                        "*",
                        color=colour,
                        markersize=16,
                        markeredgecolor="black",
                    )
    label = "users" if model == "closed" else "requests/s offered"
    for plot in (throughput, latency):
        plot.set_xlabel(f"{label} (star: capacity)")
        plot.set_xscale("log")
        plot.set_xticks(
            loads, [f"{load:g}" for load in loads], rotation=45 if len(loads) > 5 else 0
        )
        plot.minorticks_off()


def bars(throughput, latency, runs, colours):
    names = [row["preset"] for row in runs]
    positions = range(len(runs))
    shades = [colours[name] for name in names]
    throughput.bar(positions, [row["rps"] for row in runs], color=shades)
    throughput.scatter(
        positions, [row["bound_rps"] for row in runs], marker="_", s=600, color="black", zorder=3
    )
    latency.bar(positions, [row["p99_ms"] for row in runs], color=shades)
    load = runs[0]["load"] if runs else ""
    for plot in (throughput, latency):
        plot.set_xticks(positions, names, rotation=20, fontsize="small")
        plot.set_xlabel(f"at {load}")
