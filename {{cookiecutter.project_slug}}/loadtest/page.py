"""index.html: the whole report on one self-contained page.

The recommendation first (and the sizing for --target-rps), then the table,
the chart (embedded: the page needs no network and no other file to render),
and links to each run's Locust report and each server's log, which sit beside it.
"""

import base64
import html

from .table import COLUMNS, cells, describe_machine

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 1280px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td.text { text-align: left; }
tr.error td { color: #a00; }
img { max-width: 100%; }
.recommendation { background: #eef6ee; border: 1px solid #9c9; padding: 0.5rem 1rem; }
"""
TEXT_COLUMNS = {"preset", "scenario", "note"}


def render(summary, chart_path):
    e = html.escape
    chart = base64.b64encode(chart_path.read_bytes()).decode("ascii")
    recommendations = "".join(
        f"<li><b>{e(item['scenario'])}</b>: {e(item['text'])}"
        + "".join(f"<br><small>{e(text)}</small>" for text in item["compared"])
        + "</li>"
        for item in summary["recommendations"]
    ) + "".join(
        f"<li><b>{e(item['scenario'])}</b>: skipped: {e(item['reason'])}</li>"
        for item in summary["skipped"]
    )
    head = "".join(f"<th>{e(heading)}</th>" for heading, _, _ in COLUMNS) + "<th>Locust report</th>"
    body = []
    for row in summary["rows"]:
        tds = "".join(
            f'<td class="text">{e(cell)}</td>' if key in TEXT_COLUMNS else f"<td>{e(cell)}</td>"
            for (_, key, _), cell in zip(COLUMNS, cells(row), strict=True)
        )
        report = row.get("locust_html")
        link = f'<a href="{e(report)}">{e(report)}</a>' if report and not row["error"] else ""
        css = ' class="error"' if row["error"] else ""
        body.append(f'<tr{css}>{tds}<td class="text">{link}</td></tr>')
    target = ""
    if summary["target"]:
        items = "".join(
            f"<li><b>{e(sized['scenario'])}</b>, {e(sized['preset'])}"
            f"{' (recommended)' if sized['recommended'] else ''}: {e(sized['text'])}"
            + (
                f"<br>Kustomize overlay: <code>{e(sized['overlay'])}</code>"
                if sized.get("overlay")
                else ""
            )
            + "</li>"
            for sized in summary["target"]
        )
        target = (
            f"<h2>Sized for {summary['options']['target_rps']:,.0f} requests/s</h2><ul>{items}</ul>"
        )
    logs = "".join(
        f"<li>{e(name)}{command_of(preset)}: "
        f'<a href="{e(preset["log"])}">{e(preset["log"])}</a>'
        f"{(' (' + e(preset['startup_line']) + ')') if preset['startup_line'] else ''}"
        f"{('<br>error: ' + e(preset['error'])) if preset['error'] else ''}</li>"
        for name, preset in summary["presets"].items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Load test of {e(summary["started_at"])}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Load test of {e(summary["started_at"])}</h1>
<section class="recommendation">
<h2>Recommendation</h2>
<p>For each scenario: the preset with the highest capacity, the most requests/s of a load
whose p99 stayed within {summary["options"]["slo_p99_ms"]:,.0f} ms with no failed request;
then what the rows it is compared with gave.</p>
<ul>{recommendations}</ul>
</section>
{target}
<p>Machine: {e(describe_machine(summary["machine"]))}.<br>
Memory: {e(summary["memory_metric"])}.<br>
Load: users in a closed loop, each sending its next request when the last is answered; or
requests/s offered in the open model, started on a schedule whatever the server does, their
latency counted from each one's scheduled start.<br>
Bound: the least of users ÷ cycle time (or the rate offered), slots ÷ service time (Little's
law), database connections ÷ time each is held, and CPUs ÷ CPU time per request, from each
preset's calibration.
Efficiency: measured ÷ bound. Busiest worker: its share of the clients' connections, on
average (keep-alive pins a connection to the worker that accepted it).</p>
<h2>Runs</h2>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<h2>Chart</h2>
<img alt="Requests/s and p99 latency against users, one line per preset"
 src="data:image/png;base64,{chart}">
<h2>Servers</h2>
<ul>{logs}</ul>
</body>
</html>
"""


def command_of(preset):
    return f" <code>{html.escape(preset['command'])}</code>" if preset.get("command") else ""
