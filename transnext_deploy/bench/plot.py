"""The bench figure: per batch size, latency vs resolution per backend (log scale) and the speed-up
over eager PyTorch with the published attention."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .report import BenchError, BenchReport, BenchRow

_COLORS = {  # by case label (bench.run.Case.label)
    "torch-plain": "#c0392b", "torch-fast": "#e67e22", "torch-fused": "#a04000", "torch-compile": "#f1c40f",
    "onnxruntime-cpu": "#2471a3", "onnxruntime-cpu-custom": "#5dade2", "onnxruntime-cuda": "#8e44ad",
    "tensorrt fp32": "#1e8449", "tensorrt fp16": "#58d68d",
}


def plot_report(report: BenchReport, path: str | os.PathLike) -> Path:
    """PNG: per batch size, latency (p50, whisker to p90) vs resolution on a log axis, one line per
    backend, and below it the speed-up over eager PyTorch with the published attention, each bar
    labelled with its backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = report_figure(report)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130)
    except OSError as exc:
        raise BenchError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path


def report_figure(report: BenchReport):
    """The matplotlib figure plot_report saves (the caller closes it)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    meta = report.meta
    batches = meta["batches"]
    backends = meta.get("cases", meta["backends"])
    resolutions = [tuple(r) for r in meta["resolutions"]]
    xs = list(range(len(resolutions)))
    labels = [f"{h}²" if h == w else f"{h}×{w}" for h, w in resolutions]
    ok = [r for r in report.rows if r.ok]
    baseline = "torch-plain"

    width_in = max(11.5, 5.6 * len(batches) + 3.4)
    fig, axes = plt.subplots(2, len(batches), figsize=(width_in, 8.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    legend: dict[str, str] = {}
    for col, batch in enumerate(batches):
        plotted = _latency_panel(axes[0][col], ok, backends, batch, resolutions, xs, labels, legend, baseline,
                                 first=col == 0)
        _speedup_panel(axes[1][col], ok, plotted, batch, resolutions, xs, labels, baseline, first=col == 0)

    handles = [Line2D([], [], color=_COLORS.get(b, "#555555"), marker="o", lw=2.2, label=f"{b}\n{legend[b]}")
               for b in backends if b in legend]
    missing = _missing_summary(report.rows)
    handles += [Line2D([], [], color="#bbbbbb", lw=2.2, ls=":", label=f"{b}\nnot run") for b in missing]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.835, 0.9), frameon=False, fontsize=8.5,
               labelspacing=1.0, title="backend\nworst max-abs vs reference", title_fontsize=8.5,
               alignment="left")
    machine = meta["machine"]
    where = f"{machine['threads']} CPU threads" + (f", torch on {machine['gpu']}" if machine.get("gpu") else "")
    fig.suptitle(f"transnext_{meta['variant']}: latency vs input resolution", fontsize=14, fontweight="bold",
                 x=0.01, y=0.985, ha="left")
    subtitle = (f"{where} · {machine['cpu']} · torch {machine['torch']} · onnxruntime {machine['onnxruntime']} · "
                f"p50 of up to {meta['runs']} runs after {meta['warmup']} warm-up · {meta['weights']}")
    fig.text(0.01, 0.95, _wrap(subtitle, width_in, 8.5), fontsize=8.5, color="#444", va="top", parse_math=False)
    footer = [_wrap(f"{', '.join(names)}: {text}", width_in, 7.5) for text, names in _group_reasons(missing).items()]
    footer_lines = sum(f.count("\n") + 1 for f in footer)
    fig.text(0.01, 0.008, "\n".join(footer), fontsize=7.5, color="#666", va="bottom", ha="left", parse_math=False)
    fig.tight_layout(rect=(0, 0.012 + 0.017 * footer_lines, 0.83, 0.915))
    return fig


def _latency_panel(ax, ok, backends, batch, resolutions, xs, labels, legend, baseline, *, first: bool) -> list[str]:
    """Latency per backend vs resolution at one batch size (log axis, p50 with a whisker to p90);
    returns the backends plotted and fills `legend` with each one's worst max-abs."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_facecolor("#fbfbfb")
    plotted, texts = [], []
    present = [b for b in backends if any(r.label == b and r.batch == batch for r in ok)]
    for k, b in enumerate(present):
        # each backend a little to the side, so the p90 whiskers of close backends stay apart
        shift = (k - (len(present) - 1) / 2) * min(0.05, 0.5 / max(1, len(present)))
        pts = {tuple(r.resolution): r for r in ok if r.label == b and r.batch == batch}
        if not pts:
            continue
        idx = [i for i, res in enumerate(resolutions) if res in pts]
        p50 = [pts[resolutions[i]].latency_ms["p50"] for i in idx]
        p90 = [pts[resolutions[i]].latency_ms["p90"] for i in idx]
        color = _COLORS.get(b, "#555555")
        px = [xs[i] + shift for i in idx]
        ax.plot(px, p50, marker="o", lw=2.2, ms=6, color=color, zorder=3)
        ax.errorbar(px, p50, yerr=[[0.0] * len(p50), [max(0.0, hi - lo) for lo, hi in zip(p50, p90)]],
                    fmt="none", ecolor=color, elinewidth=1.4, capsize=3, zorder=2, label=f"{b} p90")
        texts += [(xs[i], v, color) for i, v in zip(idx, p50)]
        plotted.append(b)
        worst = max(r.accuracy.get("max_abs", float("nan")) for r in ok if r.label == b)
        legend[b] = "reference" if b == baseline and worst == 0 else f"max-abs {worst:.0e}"
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_ms(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(xs, labels)
    ax.set_xlim(-0.25, len(xs) - 0.45)
    if texts:
        lo = min(t[1] for t in texts)
        hi = max(t[1] for t in texts)
        ax.set_ylim(lo / 1.35, hi * 1.35)
        _label_points(ax, texts)
    if first:
        ax.set_ylabel("latency per call: p50, whisker to p90")
    ax.set_title(f"batch {batch}", fontsize=11, loc="left")
    ax.grid(True, which="major", axis="y", alpha=0.35)
    ax.grid(True, which="major", axis="x", alpha=0.15)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return plotted


def _speedup_panel(bar_ax, ok, plotted, batch, resolutions, xs, labels, baseline, *, first: bool) -> None:
    """Below a latency panel: the speed-up of every plotted backend over the baseline, a labelled bar each."""
    base = {tuple(r.resolution): r.latency_ms["p50"] for r in ok if r.label == baseline and r.batch == batch}
    others = [b for b in plotted if b != baseline]
    if base and others:
        width = 0.8 / len(others)
        for k, b in enumerate(others):
            vals, pos = [], []
            for i, res in enumerate(resolutions):
                row = next((r for r in ok if r.label == b and r.batch == batch and tuple(r.resolution) == res),
                           None)
                if row is not None and res in base:
                    vals.append(base[res] / row.latency_ms["p50"])
                    pos.append(xs[i] - 0.4 + width * (k + 0.5))
            bars = bar_ax.bar(pos, vals, width * 0.88, color=_COLORS.get(b, "#555555"), label=b)
            for rect, v in zip(bars, vals):
                middle = rect.get_x() + rect.get_width() / 2
                bar_ax.annotate(f"{v:.1f}×", (middle, v), ha="center",
                                va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
                # the backend's name on its bar: the colours alone (two blues for onnxruntime-cpu
                # and onnxruntime-cpu-custom) do not tell the bars apart
                bar_ax.annotate(b, (middle, 0), ha="center", va="bottom", rotation=90, fontsize=7,
                                xytext=(0, 3), textcoords="offset points", color="#222",
                                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
        bar_ax.axhline(1.0, color="#888", lw=1, ls="--")
        bar_ax.set_xticks(xs, labels)
        bar_ax.set_xlim(-0.5, len(xs) - 0.5)
        if first:
            bar_ax.set_ylabel(f"speed-up over {baseline} (p50)")
        bar_ax.margins(y=0.18)
        for side in ("top", "right"):
            bar_ax.spines[side].set_visible(False)
    else:
        bar_ax.axis("off")
        bar_ax.text(0.5, 0.5, f"no {baseline} row to compare with", ha="center", va="center", color="#888")
    bar_ax.set_xlabel("input resolution")


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, max(40, int(width_in * 72 / (fontsize * 0.56)))))


def _label_points(ax, texts: list[tuple[float, float, str]]) -> None:
    """Value labels beside each point, nudged apart (in log space) where points crowd."""
    lo, hi = (math.log10(v) for v in ax.get_ylim())
    gap = (hi - lo) * 0.055
    for x in sorted({t[0] for t in texts}):
        column = sorted((t for t in texts if t[0] == x), key=lambda t: t[1])
        placed: list[float] = []
        for _, v, color in column:
            y = math.log10(v)
            if placed and y - placed[-1] < gap:
                y = placed[-1] + gap
            placed.append(y)
            ax.annotate(_fmt_ms(v), (x, v), xytext=(x + 0.22, 10 ** y), textcoords="data", fontsize=8, color=color,
                        va="center", ha="left", fontweight="bold")


def _missing_summary(rows: Sequence[BenchRow]) -> dict[str, str]:
    """backend -> a short reason, for backends with no measured row."""
    measured = {r.label for r in rows if r.ok}
    out = {}
    for r in rows:
        if not r.ok and r.label not in measured and r.label not in out:
            out[r.label] = f"{r.status}: {short_reason(r.reason)}"
    return out


def _group_reasons(missing: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for backend, text in missing.items():
        grouped.setdefault(text, []).append(backend)
    return grouped


def short_reason(reason: str) -> str:
    """'a (detail); b: more (detail)' -> 'a; b: more': the parenthesised details dropped."""
    previous = None
    while previous != reason:
        previous, reason = reason, re.sub(r"\s*\([^()]*\)", "", reason)
    return "; ".join(p.strip() for p in reason.split(";") if p.strip())


def _fmt_ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.3g} s"
    if v >= 1:
        return f"{v:.3g} ms"
    return f"{v * 1000:.3g} µs"


__all__ = ["plot_report", "report_figure", "short_reason"]
