"""Figures of a training run: loss, accuracy, per-class validation accuracy and class gap per epoch."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nexara_lib.config import SCHEMA
from nexara_lib.training.monitor import check_gap_thresholds


def plot_training_history(
    history_df: pd.DataFrame,
    gap_warning: float = SCHEMA["gap_warning"].default,
    gap_critical: float = SCHEMA["gap_critical"].default,
    best_epoch: int | None = None,
) -> Figure:
    """Loss, accuracy, per-class validation accuracy and class gap per epoch.

    Args:
        history_df: ``history.csv`` as a DataFrame (needs at least ``loss``).
        gap_warning: drawn as a dashed orange line on the gap panel.
        gap_critical: drawn as a dashed red line on the gap panel.
        best_epoch: if given, a vertical line on every panel.

    Returns:
        A matplotlib Figure with four panels.
    """
    if not isinstance(history_df, pd.DataFrame) or history_df.empty or "loss" not in history_df:
        raise ValueError(
            "history_df must be a non-empty DataFrame with at least a 'loss' column "
            "(read history.csv with pandas.read_csv)"
        )
    check_gap_thresholds(gap_warning, gap_critical)
    epochs = history_df["epoch"] if "epoch" in history_df else np.arange(1, len(history_df) + 1)
    fig = Figure(figsize=(12, 8), layout="constrained")
    (ax_loss, ax_acc), (ax_class, ax_gap) = fig.subplots(2, 2, sharex=True)
    panels = [
        (ax_loss, "Loss", [("loss", "train"), ("val_loss", "validation")]),
        (
            ax_acc,
            "Accuracy",
            [("accuracy", "train"), ("val_accuracy", "validation"), ("val_balanced_accuracy", "validation balanced")],
        ),
        (
            ax_class,
            "Validation accuracy per class",
            [("val_acc_nonviolent", "non-violent"), ("val_acc_violent", "violent")],
        ),
        (ax_gap, "Validation class gap", [("val_class_gap", "|acc non-violent - acc violent|")]),
    ]
    for ax, title, series in panels:
        for column, label in series:
            if column in history_df:
                ax.plot(epochs, history_df[column], label=label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_gap.axhline(gap_warning, color="tab:orange", linestyle="--", label=f"warning ({gap_warning:.0%})")
    ax_gap.axhline(gap_critical, color="tab:red", linestyle="--", label=f"critical ({gap_critical:.0%})")
    ax_gap.set_ylim(bottom=0)
    if best_epoch is not None:
        for ax in (ax_loss, ax_acc, ax_class, ax_gap):
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
    for ax in (ax_loss, ax_acc, ax_class, ax_gap):
        ax.legend(loc="best", fontsize="small")
    for ax in (ax_class, ax_gap):
        ax.set_xlabel("epoch")
    return fig
