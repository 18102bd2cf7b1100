"""Figures of notebook 08: the learning curve over reviewed clips per camera with 95% CI bands, and what a
per-camera threshold changes for each held-out camera. Built as ``matplotlib.figure.Figure`` (no pyplot)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nexara_lib.evaluation.adaptation_report import DESIGN_WORDS

PANELS = (("accuracy", "accuracy"), ("auc", "ROC AUC"), ("recall", "fight recall at the target false-alarm rate"))
COLORS = {"plain": "#4c72b0", "adapted": "#dd8452"}


def learning_curve_figure(curve: pd.DataFrame, false_alarm_rate: float) -> Figure:
    """Accuracy, AUC and fight recall against the reviewed clips per camera (k), one line per design, with the
    95% CI over cameras as a band."""
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    for ax, (metric, title) in zip(axes, PANELS, strict=True):
        for design, part in curve.groupby("design", sort=False):
            part = part.sort_values("k")
            k = part["k"].to_numpy()
            color = COLORS.get(str(design), None)
            style = "--" if design == "adapted" else "-"  # the designs share a model: dashes keep both visible
            label = DESIGN_WORDS.get(str(design), str(design))
            ax.plot(k, part[metric], marker="o", linestyle=style, color=color, label=label)
            ax.fill_between(k, part[f"{metric}_ci_low"], part[f"{metric}_ci_high"], color=color, alpha=0.18)
        ax.set_xticks(sorted(curve["k"].unique()))
        ax.set_xlabel("reviewed clips per camera (k)")
        ax.set_ylim(0, 1.02)
        ax.set_title(title if metric != "recall" else f"fight recall at {false_alarm_rate:.0%} false alarms")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("What a new camera gains from reviewed clips (held-out cameras, 95% CI over cameras)")
    return fig


def camera_threshold_figure(per_camera: pd.DataFrame, comparison: pd.DataFrame) -> Figure:
    """Left: fight recall and false-alarm rate at the global and at the per-camera threshold, with 95% CIs.
    Right: per held-out camera with fights, the share caught at each threshold."""
    fights = per_camera[per_camera["fights"] > 0].sort_values("recall global")
    fig = Figure(figsize=(12, min(10.0, max(4.2, 1.6 + 0.2 * len(fights)))), layout="constrained")  # a row each
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    rows = [r for r in ("global threshold", "per-camera threshold") if r in comparison.index]
    x = np.arange(2)
    for offset, name in zip((-0.18, 0.18), rows, strict=True):
        row = comparison.loc[name]
        values = np.array([row["recall"], row["false_alarm_rate"]])
        low = values - np.array([row["recall_ci_low"], row["false_alarm_rate_ci_low"]])
        high = np.array([row["recall_ci_high"], row["false_alarm_rate_ci_high"]]) - values
        color = COLORS["plain" if name.startswith("global") else "adapted"]
        left.bar(x + offset, values, width=0.34, color=color, label=name)
        left.errorbar(x + offset, values, yerr=[low, high], fmt="none", ecolor="black", capsize=4)
    left.set_xticks(x, ["fights caught", "false alarms"])
    left.set_ylim(0, 1.02)
    left.legend(fontsize=8)
    left.set_title("all held-out cameras (95% CI)")
    ypos = np.arange(len(fights))
    for column, name in (("recall global", "global"), ("recall per camera", "per camera")):
        right.scatter(
            fights[column], ypos, color=COLORS["plain" if name == "global" else "adapted"], label=name, zorder=3
        )
    for y, (a, b) in enumerate(zip(fights["recall global"], fights["recall per camera"], strict=True)):
        right.plot([a, b], [y, y], color="grey", lw=1, zorder=2)
    names = [f"camera {i + 1} ({n} fight{'s' if n != 1 else ''})" for i, n in enumerate(fights["fights"])]
    right.set_yticks(ypos, names, fontsize=8 if len(names) <= 30 else 6)
    right.set_xlim(-0.02, 1.02)
    right.set_xlabel("share of the camera's fights caught (over fold seeds)")
    right.legend(fontsize=8, loc="lower right")
    right.set_title("per camera with fights")
    fig.suptitle("Global on-threshold against a per-camera threshold set on the camera's own normal clips")
    return fig
