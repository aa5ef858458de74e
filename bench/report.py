"""Compare report: self-contained HTML (plots as base64 PNG data URIs), markdown, CSV, JSON."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.compare import BOUND  # noqa: E402

MAX_TABLES_PLOTTED = 12


def _png_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _style(policy: str) -> dict:
    if policy.split(":")[0] == BOUND:
        return {"color": "black", "linestyle": "--", "linewidth": 2}
    return {}


def _by_policy(result: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for point in result["results"]:
        out.setdefault(point["policy"], []).append(point)
    return out


def reference_size(result: dict) -> str:
    """The cache size the time and per-table plots use: the middle of the grid."""
    sizes = result["config"]["sizes"]
    return sizes[len(sizes) // 2]


def plot_miss_ratio_curve(result: dict) -> str:
    """Miss ratio against cache size, one line per policy, Belady dashed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy, points in _by_policy(result).items():
        points = sorted(points, key=lambda p: p["capacity"])
        ax.plot([p["capacity"] for p in points], [p["miss_ratio"] for p in points], marker="o",
                label=policy, **_style(policy))
    ax.set_xscale("log")
    ax.set_xlabel(f"cache size ({result['capacity_unit']})")
    ax.set_ylabel("miss ratio")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("Miss ratio vs cache size")
    return _png_data_uri(fig)


def plot_hit_ratio_over_time(result: dict) -> str:
    """Hit ratio per time window at the reference size."""
    size = reference_size(result)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for point in result["results"]:
        if point["size"] != size:
            continue
        series = point["hit_ratio_over_time"]
        starts = [i * point["window_requests"] for i in range(len(series))]
        ax.plot(starts, series, label=point["policy"], **_style(point["policy"]))
    ax.set_xlabel("request index")
    ax.set_ylabel("hit ratio in window")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"Hit ratio over time (cache size {size})")
    return _png_data_uri(fig)


def plot_per_table(result: dict) -> str:
    """Per-table miss ratio at the reference size (the busiest tables)."""
    size = reference_size(result)
    points = [p for p in result["results"] if p["size"] == size]
    tables = sorted(points[0]["per_table"], key=lambda t: -points[0]["per_table"][t]["requests"])[:MAX_TABLES_PLOTTED]
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(tables) * len(points) / 3), 4.5))
    width = 0.8 / len(points)
    for i, point in enumerate(points):
        xs = [t + i * width for t in range(len(tables))]
        ax.bar(xs, [point["per_table"][t]["miss_ratio"] for t in tables], width=width, label=point["policy"],
               color="black" if point["policy"].split(":")[0] == BOUND else None)
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tables))])
    ax.set_xticklabels(tables, rotation=45, ha="right")
    ax.set_ylabel("miss ratio")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(f"Per-table miss ratio (cache size {size}, busiest {len(tables)} tables)")
    return _png_data_uri(fig)


def _rows(result: dict) -> list[dict]:
    return [
        {k: p[k] for k in ("policy", "size", "capacity", "hits", "misses", "miss_ratio", "byte_hits",
                           "byte_misses", "byte_miss_ratio")}
        for p in result["results"]
    ]


def markdown_summary(result: dict) -> str:
    """A markdown table of miss ratios (policies x sizes) with the gap to Belady."""
    sizes = result["config"]["sizes"]
    by_policy = _by_policy(result)
    bound = {p["size"]: p["miss_ratio"] for p in by_policy.get(BOUND, [])}
    trace = result["trace"]
    lines = [
        "# Cache policy comparison",
        "",
        f"Trace `{result['config']['trace']}`: {trace['requests']:,} requests, {trace['batches']:,} batches, "
        f"{trace['distinct_keys']:,} distinct (table, row) keys over {len(trace['tables'])} tables. "
        f"Capacities in {result['capacity_unit']}.",
        "",
        "Miss ratio (gap to Belady in parentheses):",
        "",
        "| policy | " + " | ".join(sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for policy, points in by_policy.items():
        cells = []
        for size in sizes:
            p = next(q for q in points if q["size"] == size)
            gap = "" if policy.split(":")[0] == BOUND else f" (+{p['miss_ratio'] - bound[size]:.4f})"
            cells.append(f"{p['miss_ratio']:.4f}{gap}")
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    best = {size: min((p for p in result["results"] if p["size"] == size and p["policy"].split(":")[0] != BOUND),
                      key=lambda p: p["miss_ratio"], default=None) for size in sizes}
    lines += ["", "Best online policy per size: " + ", ".join(
        f"{size}: {b['policy']} ({b['miss_ratio']:.4f})" for size, b in best.items() if b), ""]
    lines += ["Configuration:", "", "```json", json.dumps(result["config"], indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def html_page(result: dict) -> str:
    """The self-contained HTML report."""
    images = [
        ("Miss ratio vs cache size", plot_miss_ratio_curve(result)),
        ("Hit ratio over time", plot_hit_ratio_over_time(result)),
        ("Per-table breakdown", plot_per_table(result)),
    ]
    rows = _rows(result)
    header = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                         for v in r.values()) + "</tr>"
        for r in rows
    )
    figures = "".join(
        f'<figure><img alt="{html.escape(title)}" src="{uri}"><figcaption>{html.escape(title)}</figcaption></figure>'
        for title, uri in images
    )
    trace = result["trace"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tierstore compare: {html.escape(result['config']['trace'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
td {{ text-align: right; }} figure {{ display: inline-block; margin: 1em; }} img {{ max-width: 100%; }}
pre {{ background: #f4f4f4; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>Cache policy comparison</h1>
<p>Trace <code>{html.escape(result['config']['trace'])}</code>: {trace['requests']:,} requests,
{trace['batches']:,} batches, {trace['distinct_keys']:,} distinct (table, row) keys over {len(trace['tables'])} tables.
Capacities in {result['capacity_unit']}; Belady (dashed) is the offline optimum.</p>
{figures}
<h2>Results</h2><table><tr>{header}</tr>{body}</table>
<h2>Configuration</h2><pre>{html.escape(json.dumps(result['config'], indent=1, sort_keys=True))}</pre>
</body></html>
"""


def write_report(result: dict, out_dir) -> dict[str, str]:
    """Write ``report.html``, ``summary.md``, ``results.csv`` and ``results.json``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("report.html", "summary.md", "results.csv", "results.json")}
    with open(paths["report.html"], "w") as f:
        f.write(html_page(result))
    with open(paths["summary.md"], "w") as f:
        f.write(markdown_summary(result))
    with open(paths["results.csv"], "w", newline="") as f:
        f.write("# config: " + json.dumps(result["config"], sort_keys=True) + "\n")
        rows = _rows(result)
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(paths["results.json"], "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    return paths
