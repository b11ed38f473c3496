"""Summaries of a benchmark run: medians with min-max, pairwise ratios, table, JSON, PNG.

Postfix counterpart: none.

Records (dicts from ``scenarios``) are grouped by (scenario, variant); for each MTA the
figure of the scenario (msgs/s, or MiB for the idle-sessions scenario) is summarised as
median [min-max] over repetitions, and the fastpost/Postfix ratio is computed *pair by
pair* (repetition k of one against repetition k of the other, both run back to back)
and then summarised, which cancels most of the drift of a shared, noisy machine.

``plot()`` needs matplotlib (the optional ``bench`` extra); without it the PNG is
skipped and the caller is told why.

Fails: never on missing figures: a group with no successful repetition prints "failed"
or "not yet available" with the reason.
"""

from __future__ import annotations

import json
import statistics

MTAS = ("postfix", "fastpost")
LABEL = {"postfix": "C Postfix", "fastpost": "fastpost", "none": "tools"}


def summary(values: list[float]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(s: dict | None, digits: int = 0) -> str:
    if s is None:
        return "-"
    f = f"{{:,.{digits}f}}"
    if s["n"] == 1:
        return f.format(s["median"])
    return f"{f.format(s['median'])} [{f.format(s['min'])}-{f.format(s['max'])}]"


def groups(records: list[dict]) -> list[dict]:
    """One row per (scenario, variant) in first-seen order, with per-MTA summaries."""
    order: list[tuple] = []
    by: dict[tuple, dict] = {}
    for r in records:
        key = (r["scenario"], r["variant"])
        if key not in by:
            order.append(key)
            by[key] = {"scenario": r["scenario"], "variant": r["variant"], "metric": r.get("metric", "rate"),
                       "unit": r.get("unit", "msgs/s"), "runs": {}}
        by[key]["runs"].setdefault(r["mta"], []).append(r)
    rows = []
    for key in order:
        row = by[key]
        metric = row["metric"]
        for mta, runs in row["runs"].items():
            good = [r for r in runs if r.get("ok")]
            row[mta] = {
                "value": summary([r.get(metric) for r in good]),
                "cpu_s_per_1k": summary([r.get("cpu_s_per_1k") for r in good]),
                "peak_rss_mib": summary([r["peak_rss"] / 2**20 for r in good if r.get("peak_rss")]),
                "peak_pss_mib": summary([r["peak_pss"] / 2**20 for r in good if r.get("peak_pss")]),
                "cpu_by_daemon": _daemon_medians(good),
                "ok": len(good), "runs": len(runs),
                "errors": sorted({r.get("error", "") for r in runs if not r.get("ok")})[:3],
                "unavailable": next((r.get("unavailable") for r in runs if r.get("unavailable")), None),
            }
        pf = {r["rep"]: r for r in row["runs"].get("postfix", []) if r.get("ok")}
        fp = {r["rep"]: r for r in row["runs"].get("fastpost", []) if r.get("ok")}
        ratios = []
        for rep in sorted(set(pf) & set(fp)):
            a, b = pf[rep].get(metric), fp[rep].get(metric)
            if a and b is not None:
                ratios.append(b / a)
        row["ratio"] = summary(ratios)
        rows.append(row)
    return rows


def _daemon_medians(runs: list[dict]) -> dict[str, float]:
    names: dict[str, list[float]] = {}
    for r in runs:
        n = r.get("messages") or 0
        for d, s in (r.get("cpu_by_daemon") or {}).items():
            if n:
                names.setdefault(d, []).append(1000 * s / n)
    return {d: round(statistics.median(v), 3) for d, v in
            sorted(names.items(), key=lambda kv: -statistics.median(kv[1]))}


def _cell(row: dict, mta: str) -> str:
    m = row.get(mta)
    if m is None:
        return "-"
    if m["unavailable"]:
        return "not yet available"
    if m["value"] is None:
        return f"failed ({m['runs'] - m['ok']}/{m['runs']})"
    digits = 1 if row["metric"] not in ("rate", "proven") else 0
    return fmt(m["value"], digits)


def _mem(m: dict | None) -> str:
    if not m or m["peak_rss_mib"] is None:
        return "-"
    pss = m["peak_pss_mib"]["median"] if m["peak_pss_mib"] else 0
    return f"{m['peak_rss_mib']['median']:,.0f} ({pss:,.0f})"


def _cpu_cell(row: dict, mta: str) -> str:
    m = row.get(mta)
    if not m or m["cpu_s_per_1k"] is None:
        return "-"
    top = list(m["cpu_by_daemon"].items())[:3]
    parts = ", ".join(f"{d} {v:.2f}" for d, v in top)
    return f"{m['cpu_s_per_1k']['median']:.2f} ({parts})"


def table(rows: list[dict]) -> str:
    """A plain-text table, one line per scenario and variant."""
    head = ["scenario", "variant", "unit", "C Postfix", "fastpost", "fastpost/Postfix",
            "CPU s/1k msgs Postfix (top daemons)", "CPU s/1k fastpost", "peak RSS (PSS) MiB Postfix / fastpost"]
    lines = []
    context = [r for r in rows if "none" in r]
    for row in rows:
        if "none" in row:
            continue
        rss = " / ".join(_mem(row.get(m)) for m in MTAS)
        lines.append([row["scenario"], row["variant"], row["unit"], _cell(row, "postfix"),
                      _cell(row, "fastpost"), fmt(row["ratio"], 2) if row["ratio"] else "-",
                      _cpu_cell(row, "postfix"), _cpu_cell(row, "fastpost"), rss])
    widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
    out = []
    if context:
        out.append("context (the tools and the disk alone): " + "; ".join(
            f"{r['variant']} {_cell(r, 'none')} {r['unit']}" for r in context))
        out.append("")
    out += [" | ".join(h.ljust(w) for h, w in zip(head, widths)),
           "-+-".join("-" * w for w in widths)]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    notes = []
    for row in rows:
        for mta in MTAS:
            m = row.get(mta)
            if m and m["unavailable"]:
                if (row["scenario"], mta) not in [(n[0], n[1]) for n in notes]:
                    notes.append((row["scenario"], mta, "missing: " + ", ".join(m["unavailable"])))
            elif m and m["errors"]:
                notes.append((row["scenario"] + " " + row["variant"], mta, "; ".join(m["errors"])[:300]))
    if notes:
        out.append("")
        out += [f"  {s} / {LABEL[m]}: {why}" for s, m, why in notes]
    return "\n".join(out)


def markdown(rows: list[dict]) -> str:
    """The same table in Markdown (for benchmarks/README.md and notes)."""
    text = table(rows).split("\n")
    body = [line for line in text if " | " in line or set(line) <= set("-+")]
    body = [line for line in body if line]
    md = ["| " + body[0].replace(" | ", " | ").strip() + " |",
          "|" + "---|" * len(body[0].split(" | "))]
    md += ["| " + line.strip() + " |" for line in body[2:]]
    return "\n".join(md)


def write_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh, indent=1, default=str)
    import os
    os.replace(path + ".tmp", path)


def plot(rows: list[dict], path: str, title: str) -> str | None:
    """Write the PNG; returns None on success or the reason it was not written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    thr = [r for r in rows if r["metric"] == "rate"]
    idle = [r for r in rows if r["scenario"] == "idle"]
    cpu = [r for r in thr if any(r.get(m) and r[m]["cpu_s_per_1k"] for m in MTAS)]
    panels = 1 + bool(cpu) + bool(idle)
    fig, axes = plt.subplots(panels, 1, figsize=(max(8, 0.9 * len(thr) + 3), 4.2 * panels), squeeze=False)
    colors = {"postfix": "#4a72b0", "fastpost": "#dd8452", "none": "#8c8c8c"}
    ax = axes[0][0]
    xs = range(len(thr))
    for k, mta in enumerate(("postfix", "fastpost", "none")):
        for x, row in zip(xs, thr):
            m = row.get(mta)
            if m is None:
                continue
            off = {"postfix": -0.2, "fastpost": 0.2, "none": 0.0}[mta]
            if m["value"] is None:
                ax.text(x + off, 0, f"{LABEL[mta]}: n/a" if m["unavailable"] else f"{LABEL[mta]}: failed", ha="center", va="bottom",
                        fontsize=8, rotation=90, color=colors[mta])
                continue
            v = m["value"]
            ax.bar(x + off, v["median"], width=0.4, color=colors[mta],
                   yerr=[[v["median"] - v["min"]], [v["max"] - v["median"]]], capsize=3,
                   label=LABEL[mta] if x == next(i for i, r in zip(xs, thr) if r.get(mta)) else None)
            if mta == "fastpost" and row["ratio"]:
                ax.text(x + off, v["max"], f"{row['ratio']['median']:.2f}x", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r['scenario']}\n{r['variant']}" for r in thr], fontsize=7)
    ax.set_ylabel("messages/s (files/s for fsync)")
    ax.set_title(title + "\nthroughput: median, bars min-max; label over fastpost = fastpost/Postfix", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    p = 1
    if cpu:
        ax = axes[p][0]
        p += 1
        for x, row in enumerate(cpu):
            for mta, off in (("postfix", -0.2), ("fastpost", 0.2)):
                m = row.get(mta)
                if not m or not m["cpu_by_daemon"]:
                    continue
                bottom = 0.0
                for d, v in m["cpu_by_daemon"].items():
                    ax.bar(x + off, v, 0.4, bottom=bottom, color=colors[mta], edgecolor="white")
                    if v > 0.08 * max(0.01, m["cpu_s_per_1k"]["median"]):
                        ax.text(x + off, bottom + v / 2, d, ha="center", va="center", fontsize=6, color="white")
                    bottom += v
        ax.set_xticks(range(len(cpu)))
        ax.set_xticklabels([f"{r['scenario']}\n{r['variant']}" for r in cpu], fontsize=7)
        ax.set_ylabel("CPU seconds per 1,000 messages")
        ax.set_title("CPU by daemon (left C Postfix, right fastpost)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if idle:
        ax = axes[p][0]
        row = idle[0]
        names, vals, cols, notes = [], [], [], []
        for mta in MTAS:
            m = row.get(mta)
            if not m:
                continue
            names.append(LABEL[mta])
            vals.append(m["value"]["median"] if m["value"] else 0)
            cols.append(colors[mta])
            runs = [r for r in row["runs"].get(mta, []) if r.get("ok")]
            if runs:
                r = runs[0]
                served = "not served" if r["probe_seconds"] is None else f"{r['probe_seconds']:.3f} s"
                notes.append(f"{LABEL[mta]}: {r['bannered']} of {r['sessions']} bannered, one more: {served}")
            elif m["unavailable"]:
                notes.append(f"{LABEL[mta]}: not yet available")
        ax.barh(names, vals, color=cols)
        ax.set_xlabel("total PSS of the MTA's processes, MiB")
        ax.set_title(f"idle sessions ({row['variant']}): " + "; ".join(notes), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
