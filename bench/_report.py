"""bench/compare.py's outputs: ratios, the terminal table, the JSON file and the PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Row = dict[str, Any]
#: How a ratio names the peer it is against.
SHORT = {"ext_authz_opa_envoy": "OPA-Envoy", "ratelimit_peer": "envoyproxy/ratelimit",
         "expr_cel_python": "cel-python", "expr_cel_rust": "CEL (Rust)",
         "proxy_direct": "direct", "kafka_batch": "aiokafka send_batch"}


def add_ratios(rows: list[Row]) -> None:
    """``vs_alone`` (rows behind Envoy ÷ Envoy alone) and ``vs_peer`` ({peer id: row ÷ peer})."""
    by_id = {row["id"]: row for row in rows}
    alone = by_id.get("envoy_alone")
    for row in rows:
        behind_envoy = row["kind"] == "http" and row["scenario"] != "proxy"
        row["vs_alone"] = row["value"] / alone["value"] if alone and behind_envoy else None
        peers = row.get("peer") or []
        peers = [peers] if isinstance(peers, str) else peers
        row["vs_peer"] = {p: row["value"] / by_id[p]["value"] for p in peers if p in by_id}


def _amount(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:,.0f}"


def _ms(result: dict[str, Any] | None, *keys: str) -> str:
    if not result:
        return "–"
    return " / ".join(f"{result[k]:.2f}" for k in keys)


def ratio(value: float) -> str:
    return f"{value:,.0f}×" if value >= 100 else f"{value:.3g}×" if value >= 10 else f"{value:.2f}×"


def peer_text(row: Row) -> str:
    return ", ".join(f"{ratio(r)} {SHORT.get(p, p)}" for p, r in row["vs_peer"].items()) or "–"


def _fixed(result: dict[str, Any] | None) -> str:
    text = _ms(result, "p50_ms", "p99_ms")
    if result and result["rps"] < 0.95 * result["target_rps"]:
        text += f" (got {result['rps']:,.0f}/s)"
    return text


def table(results: dict[str, Any]) -> Any:
    from rich.table import Table

    rows = results["rows"]
    rate = results["settings"]["rate"]
    title = "mixerhub side by side with its peers"
    if results["machine"]["under_load"]:
        title += " (measured under load: other work shared the CPU)"
    out = Table(title=title, caption=f"{results['machine']['cpus']} CPUs; HTTP: wrk "
                f"{results['settings']['connections']} connections for max throughput, "
                f"fortio at {rate:g} rps for latency")
    for name, justify in (("row", "left"), ("throughput", "right"), ("÷ Envoy alone", "right"),
                          ("÷ peer", "left"), (f"@{rate:g} rps p50 / p99 ms", "right"),
                          ("max: p50 / p99 ms", "right"), ("errors", "right")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        errors = (row.get("max") or {}).get("errors", 0) + (row.get("fixed") or {}).get(
            "errors", 0)
        out.add_row(row["label"], f"{_amount(row['value'])} {row['unit']}",
                    f"{row['vs_alone']:.2f}" if row["vs_alone"] is not None else "–",
                    peer_text(row), _fixed(row.get("fixed")),
                    _ms(row.get("max"), "p50_ms", "p99_ms"),
                    str(errors) if row["kind"] == "http" else "–")
    return out


def markdown(results: dict[str, Any]) -> str:
    """The table as Markdown, for docs/performance.md."""
    rate = results["settings"]["rate"]
    lines = [f"| row | throughput | ÷ Envoy alone | ÷ peer | @{rate:g} rps p50 / p99 ms | "
             "max: p50 / p99 ms |", "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        alone = f"{row['vs_alone']:.2f}" if row["vs_alone"] is not None else "–"
        lines.append(f"| {row['label']} | {_amount(row['value'])} {row['unit']} | {alone} | "
                     f"{peer_text(row)} | {_fixed(row.get('fixed'))} | "
                     f"{_ms(row.get('max'), 'p50_ms', 'p99_ms')} |")
    return "\n".join(lines) + "\n"


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    http = [row for row in rows if row["kind"] == "http"]
    other = [row for row in rows if row["kind"] != "http"]
    sizes = ([len(http), len(http)] if http else []) + ([len(other)] if other else [])
    sizes = sizes or [1]
    fig, axes = plt.subplots(len(sizes), 1, figsize=(11, 1.2 + sum(0.45 * n + 0.9 for n in sizes)),
                             gridspec_kw={"height_ratios": [n + 1 for n in sizes]},
                             squeeze=False)
    axes = list(axes[:, 0])
    if http:
        _throughput(axes.pop(0), http, "max throughput, requests/s (wrk)")
        _latency(axes.pop(0), http, results["settings"]["rate"])
    if other:
        _throughput(axes.pop(0), other, "operations/s, log scale (records/s, evals/s)", log=True)
    title = f"mixerhub side by side — {results['started'][:10]}, {results['machine']['cpus']} CPUs"
    if results["machine"]["under_load"]:
        title += ", measured under load"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _throughput(ax: Any, rows: list[Row], xlabel: str,
                log: bool = False) -> None:
    names = [row["label"] for row in rows][::-1]
    values = [row["value"] for row in rows][::-1]
    bars = ax.barh(names, values, color=[_color(row) for row in rows][::-1])
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_xlim(right=max(values) * (400 if log else 1.9))
    for bar, row in zip(bars, rows[::-1], strict=True):
        notes = [f"{_amount(row['value'])} {row['unit'].split('/')[0]}/s"]
        if row.get("vs_alone") is not None and row["id"] != "envoy_alone":
            notes.append(f"{row['vs_alone']:.2f}× alone")
        notes += [f"{ratio(r)} {SHORT.get(p, p)}" for p, r in row["vs_peer"].items()]
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, "  " + ", ".join(notes),
                va="center", fontsize=8)


def _latency(ax: Any, rows: list[Row], rate: float) -> None:
    measured = [row for row in rows if row.get("fixed")]
    names = [row["label"] + ("\n(saturated: %.0f/s)" % row["fixed"]["rps"]
                              if row["fixed"]["rps"] < 0.95 * rate else "")
             for row in measured][::-1]
    positions = range(len(names))
    p50 = [row["fixed"]["p50_ms"] for row in measured][::-1]
    p99 = [row["fixed"]["p99_ms"] for row in measured][::-1]
    ax.barh([p + 0.2 for p in positions], p50, height=0.4, label="p50", color="#4c72b0")
    ax.barh([p - 0.2 for p in positions], p99, height=0.4, label="p99", color="#dd8452")
    ax.set_yticks(list(positions), names)
    ax.set_xlabel(f"latency at {rate:g} requests/s, ms (fortio)")
    for y, (a, b) in enumerate(zip(p50, p99, strict=True)):
        ax.text(b, y - 0.2, f" {b:.2f}", va="center", fontsize=8)
        ax.text(a, y + 0.2, f" {a:.2f}", va="center", fontsize=8)
    if p99:
        ax.set_xlim(right=max(p99) * 1.15)
    ax.legend(loc="upper right", fontsize=8)
    if not measured:
        ax.text(0.5, 0.5, "fortio not provisioned", ha="center", transform=ax.transAxes)


def _color(row: Row) -> str:
    if "hub" in row["id"] or row["id"] == "expr_cexl":
        return "#4c72b0"  # mixerhub
    if row["id"] in ("envoy_alone", "proxy_direct"):
        return "#8c8c8c"  # baselines
    return "#dd8452"  # peers
