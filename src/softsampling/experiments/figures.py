"""The reproduction's figures as PNG files (matplotlib, headless).

- :func:`plot_score_threshold` -- Fig. 2: mAP vs. score threshold, one panel per split;
- :func:`plot_overlap` -- Fig. 3: P(dropped | overlap) with the Gompertz weight curves;
- :func:`plot_examples` -- Fig. 5: the same test images under several models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from softsampling.io import atomic_write


def _figure(width: float, height: float) -> Any:
    """A bare matplotlib Figure (Agg canvas): no pyplot global state, safe beside other threads."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120)


def _save(fig: Any, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")


def plot_score_threshold(
    panels: dict[str, dict[str, tuple[list[float], list[float], list[float] | None]]],
    path: Path,
    *,
    title: str = "mAP@0.5 vs. detection score threshold",
) -> None:
    """Fig. 2. ``panels``: panel title -> curve label -> ``(thresholds, mean mAP points, std or None)``.

    One panel per split (the paper: trainval and test); a shaded band shows
    the standard deviation over seeds when given.
    """
    fig = _figure(5.2 * max(1, len(panels)), 4)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)
    # strict=False: with no panels there is still one (empty) axes
    for ax, (panel, curves) in zip(axes[0], panels.items(), strict=False):
        for label, (t, m, s) in curves.items():
            t_arr, m_arr = np.asarray(t, float), np.asarray(m, float)
            ax.plot(t_arr, m_arr, marker="o", ms=3, label=label)
            if s is not None:
                s_arr = np.asarray(s, float)
                ax.fill_between(t_arr, m_arr - s_arr, m_arr + s_arr, alpha=0.2)
        ax.set_title(panel)
        ax.set_xlabel("score threshold (detections below it discarded)")
        ax.set_ylabel("mAP@0.5 (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(loc="lower left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no results", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    _save(fig, path)


def plot_overlap(analysis: dict[str, Any], path: Path, *, title: str = "") -> None:
    """Fig. 3 from :meth:`OverlapAnalysis.to_json`: bars of P(on a dropped object | overlap) for background
    proposals, the measured ``1 - P``, the paper's Gompertz weight and the fitted one; below, proposal counts."""
    from softsampling.experiments.overlap_analysis import gompertz

    curve = analysis["curve"]
    edges = np.asarray(curve["edges"], float)
    centers = np.asarray(curve["centers"], float)
    width = np.diff(edges)
    p = np.array([np.nan if v is None else v for v in curve["p_dropped"]], float)
    fig = _figure(6.4, 6)
    ax, ax_n = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax_p = ax.twinx()  # P(dropped) is often small: give the bars their own scale on the right
    ax_p.bar(edges[:-1], np.nan_to_num(p), width=width, align="edge", alpha=0.35, color="tab:red", edgecolor="white")
    top = float(np.nanmax(p)) if np.isfinite(p).any() else 0.0
    ax_p.set_ylim(0, max(top * 1.15, 0.01))
    ax_p.set_ylabel("P(on a dropped object | overlap)  (bars)", color="tab:red")
    ax_p.tick_params(axis="y", colors="tab:red")
    ax.set_zorder(ax_p.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(centers, 1 - p, "o", color="black", ms=4, label="1 - P (background label right)")
    o = np.linspace(edges[0], edges[-1], 200)
    a, b, c = (analysis["paper"][k] for k in "abc")
    ax.plot(o, gompertz(o, a, b, c), color="tab:blue", lw=2, label=f"paper's weight (a={a:g}, b={b:g}, c={c:g})")
    if analysis.get("fitted"):
        fa, fb, fc = (analysis["fitted"][k] for k in "abc")
        ax.plot(
            o,
            gompertz(o, fa, fb, fc),
            "--",
            color="tab:green",
            lw=2,
            label=f"fitted to 1 - P (a={fa:.2f}, b={fb:.3g}, c={fc:.3g})",
        )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("weight / 1 - P")
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    ax.set_title(
        title
        or f"background proposals of {analysis['images']} curated training images "
        f"({analysis['background_on_dropped']} of {analysis['background_proposals']} on dropped objects)",
        fontsize=9,
    )
    counts = np.asarray(curve["count"], float)
    ax_n.bar(edges[:-1], counts, width=width, align="edge", color="gray", edgecolor="white")
    ax_n.set_yscale("log" if counts.max(initial=0) > 0 else "linear")
    ax_n.set_ylabel("proposals")
    ax_n.set_xlabel("overlap o: max IoU with the annotated boxes")
    _save(fig, path)


def plot_examples(rows: list[tuple[str, list[Any]]], path: Path, *, column_titles: list[str]) -> None:
    """Fig. 5: ``rows`` of ``(image title, [PIL image per model])``; one column per model (``column_titles``)."""
    n_rows, n_cols = max(1, len(rows)), max(1, len(column_titles))
    fig = _figure(3.2 * n_cols, 3.2 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c, im in enumerate(images):
            ax = axes[r][c]
            ax.imshow(np.asarray(im))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    if not rows:
        axes[0][0].text(0.5, 0.5, "no results", ha="center")
    fig.tight_layout()
    _save(fig, path)
