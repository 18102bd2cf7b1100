"""Diagnostic figures: confusion matrix, per-class accuracy with CIs, ROC/PR curves, threshold sweep,
reliability, attention gallery.

Figures are built as ``matplotlib.figure.Figure`` objects (not through pyplot),
returned and never shown: the notebook displays them once, scripts save them,
and no global pyplot state piles up in long runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from nexara_lib.evaluation.calibration import expected_calibration_error, reliability_curve
from nexara_lib.evaluation.metrics import binary_metrics
from nexara_lib.evaluation.predictions import Predictions, check_labels, check_preds_by_split
from nexara_lib.labels import CLASS_NAMES


def confusion_matrix_figure(y_true, pred, title: str | None = None) -> Figure:
    """Confusion matrix as counts (left) and normalized per true class (right).

    Args:
        y_true: (N,) 0/1 labels.
        pred: (N,) 0/1 predictions.
        title: optional figure title.

    Returns:
        Figure with two axes.
    """
    y, p = check_labels(y_true), check_labels(pred, "pred")
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but pred has {len(p)}")
    counts = np.array([[np.sum((y == t) & (p == q)) for q in (0, 1)] for t in (0, 1)])
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = counts / counts.sum(axis=1, keepdims=True)
    fig = Figure(figsize=(8.5, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, name in zip(axes, (counts, rates), ("counts", "fraction of true class"), strict=True):
        ax.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0, vmax=1)  # colour by rate in both: comparable
        for t in (0, 1):
            for q in (0, 1):
                text = f"{values[t, q]:d}" if values is counts else f"{values[t, q]:.1%}"
                ax.text(
                    q,
                    t,
                    text,
                    ha="center",
                    va="center",
                    color="white" if np.nan_to_num(rates[t, q]) > 0.5 else "black",
                    fontsize=12,
                )
        ax.set_xticks([0, 1], [f"pred {n}" for n in CLASS_NAMES])
        ax.set_yticks([0, 1], [f"true {n}" for n in CLASS_NAMES])
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    return fig


def per_class_accuracy_figure(rows: Sequence[tuple[str, float, float, float]], title: str | None = None) -> Figure:
    """Horizontal bars of accuracies with their 95% CIs as error bars, one bar per row.

    Args:
        rows: ``(label, value, ci_low, ci_high)`` fractions, e.g. ``("violent clips", 0.92, 0.83, 0.98)``.
        title: optional axes title.
    """
    if not rows:
        raise ValueError("per_class_accuracy_figure needs at least one (label, value, low, high) row")
    labels = [r[0] for r in rows]
    values = np.array([r[1] for r in rows], dtype=float)
    low = np.clip(values - np.array([r[2] for r in rows], dtype=float), 0, None)
    high = np.clip(np.array([r[3] for r in rows], dtype=float) - values, 0, None)
    fig = Figure(figsize=(6.5, 0.7 + 0.6 * len(rows)), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(rows))[::-1]
    ax.barh(positions, values, xerr=[low, high], color="#4c8fc7", capsize=4, height=0.55)
    for y, value in zip(positions, values, strict=True):
        ax.text(0.02, y, f"{value:.1%}", ha="left", va="center", color="white", fontsize=10, fontweight="bold")
    ax.set_yticks(positions, labels)
    ax.set_xlim(0, 1.0)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.set_xlabel("share of clips labelled correctly (bars: 95% confidence interval)")
    if title:
        ax.set_title(title)
    return fig


def roc_pr_figure(
    preds_by_split: Mapping[str, Predictions], operating_points: Mapping[str, float] | None = None
) -> Figure:
    """ROC (left) and precision-recall (right) curves per split, AUCs in the legends.

    Args:
        preds_by_split: e.g. {"val": val_preds, "test": test_preds}.
        operating_points: optional {name: threshold} marked on every curve.

    Returns:
        Figure with two axes.
    """
    check_preds_by_split(preds_by_split, "roc_pr_figure")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_roc, ax_pr = fig.subplots(1, 2)
    markers = "oXsD^v"
    for split, preds in preds_by_split.items():
        y, p = preds.y_true, preds.prob
        if y.min() == y.max():
            raise ValueError(f"roc_pr_figure: split {split!r} has only one class; ROC/PR curves need both")
        m = binary_metrics(y, p)
        fpr, tpr, _ = roc_curve(y, p)
        (line,) = ax_roc.plot(fpr, tpr, label=f"{split} (ROC AUC {m['roc_auc']:.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        ax_pr.plot(recall, precision, color=line.get_color(), label=f"{split} (PR AUC {m['pr_auc']:.3f})")
        ax_pr.axhline(y.mean(), color=line.get_color(), lw=0.8, ls=":")  # chance level = prevalence
        for i, (name, t) in enumerate((operating_points or {}).items()):
            marker = markers[i % len(markers)]  # markers repeat rather than drop an operating point
            mt = binary_metrics(y, p, t)
            ax_roc.plot(
                mt["fpr"], mt["recall_violent"], marker, color=line.get_color(), label=f"{split} @ {name} ({t:.2f})"
            )
            if not np.isnan(mt["precision_violent"]):
                ax_pr.plot(mt["recall_violent"], mt["precision_violent"], marker, color=line.get_color())
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax_roc.set(
        xlabel="false positive rate",
        ylabel="true positive rate (violent recall)",
        title="ROC",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
    )
    ax_pr.set(
        xlabel="recall (violent)",
        ylabel="precision (violent)",
        title="Precision-recall",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
    )
    ax_roc.legend(loc="lower right", fontsize=8)
    ax_pr.legend(loc="lower left", fontsize=8)
    return fig


def threshold_sweep_figure(
    sweep: pd.DataFrame, chosen: Mapping[str, float] | None = None, title: str | None = None
) -> Figure:
    """Per-class accuracy, balanced accuracy and FPR against the threshold, chosen thresholds marked.

    Args:
        sweep: output of ``threshold_sweep``.
        chosen: optional {name: threshold} drawn as vertical lines.
        title: optional axes title.

    Returns:
        Figure with one axes.
    """
    needed = {"threshold", "balanced_accuracy", "acc_nonviolent", "acc_violent", "fpr"}
    if not needed <= set(sweep.columns):
        raise ValueError(
            f"threshold_sweep_figure needs the output of threshold_sweep; missing {sorted(needed - set(sweep.columns))}"
        )
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    t = sweep["threshold"]
    ax.plot(t, sweep["balanced_accuracy"], lw=2.2, label="balanced accuracy")
    ax.plot(t, sweep["acc_violent"], label="accuracy violent (recall)")
    ax.plot(t, sweep["acc_nonviolent"], label="accuracy non-violent")
    ax.plot(t, sweep["fpr"], ls=":", label="false positive rate")
    colors = ("black", "tab:red", "tab:purple", "tab:brown")
    for i, (name, value) in enumerate((chosen or {}).items()):
        color = colors[i % len(colors)]  # colours repeat rather than drop a chosen threshold
        ax.axvline(value, color=color, ls="--", lw=1.2, label=f"{name}: {value:.3f}")
    ax.set(
        xlabel="threshold (violent if prob >= threshold)",
        ylabel="rate",
        ylim=(-0.02, 1.02),
        title=title or "Threshold sweep",
    )
    ax.legend(fontsize=8, loc="best")
    return fig


def reliability_figure(preds_by_split: Mapping[str, Predictions], n_bins: int = 10) -> Figure:
    """Reliability diagram (top, ECE in the legend) and histogram of probabilities (bottom).

    Returns:
        Figure with two axes.
    """
    check_preds_by_split(preds_by_split, "reliability_figure")
    fig = Figure(figsize=(5.5, 6), layout="constrained")
    ax, ax_hist = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    width = 1.0 / n_bins / (len(preds_by_split) + 1)
    for i, (split, preds) in enumerate(preds_by_split.items()):
        curve = reliability_curve(preds.y_true, preds.prob, n_bins)
        ece = expected_calibration_error(preds.y_true, preds.prob, n_bins)
        used = curve["count"] > 0
        (line,) = ax.plot(curve["mean_prob"][used], curve["frac_violent"][used], "o-", label=f"{split} (ECE {ece:.3f})")
        ax_hist.bar(
            curve["bin_lower"] + (i + 0.5) * width,
            curve["count"],
            width=width,
            align="edge",
            color=line.get_color(),
            label=split,
        )
    ax.set(ylabel="observed fraction violent", title="Reliability", xlim=(0, 1), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, loc="upper left")
    ax_hist.set(xlabel="predicted probability of violent", ylabel="clips")
    return fig


def _thumbnail_strip(frames: np.ndarray, thumb_height: int) -> np.ndarray:
    # Stride-subsample instead of resizing: no OpenCV needed and good enough for thumbnails.
    step = max(1, frames.shape[1] // thumb_height)
    small = frames[:, ::step, ::step]
    return np.concatenate(list(small), axis=1)


def attention_gallery_figure(
    frames_list: Sequence[np.ndarray],
    attention_list: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    thumb_height: int = 64,
) -> Figure:
    """A strip of frame thumbnails per clip with its temporal attention as bars underneath.

    Args:
        frames_list: per clip, (T, H, W, 3) uint8 RGB frames.
        attention_list: per clip, (T,) attention weights (one per frame).
        titles: optional title per clip (e.g. "clip 17: true violent, p=0.08").
        thumb_height: approximate thumbnail height in pixels.

    Returns:
        Figure with two axes per clip (thumbnails, attention bars).
    """
    if len(frames_list) == 0:
        raise ValueError("attention_gallery_figure: frames_list is empty; pass at least one clip")
    if len(attention_list) != len(frames_list):
        raise ValueError(
            f"attention_gallery_figure: {len(frames_list)} clips but {len(attention_list)} attention arrays"
        )
    if titles is not None and len(titles) != len(frames_list):
        raise ValueError(f"attention_gallery_figure: {len(frames_list)} clips but {len(titles)} titles")
    for i, (frames, att) in enumerate(zip(frames_list, attention_list, strict=True)):
        frames, att = np.asarray(frames), np.asarray(att)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"attention_gallery_figure: clip {i} frames must be (T, H, W, 3) uint8 RGB, "
                f"got shape {frames.shape} dtype {frames.dtype}"
            )
        if att.shape != (frames.shape[0],) or not np.isfinite(att).all():
            raise ValueError(
                f"attention_gallery_figure: clip {i} attention must be ({frames.shape[0]},) finite "
                f"weights, one per frame; got shape {att.shape}"
            )
    n = len(frames_list)
    t_max = max(np.asarray(f).shape[0] for f in frames_list)
    fig = Figure(figsize=(min(18.0, max(6.0, 0.75 * t_max)), 2.3 * n), layout="constrained")
    axes = fig.subplots(2 * n, 1, height_ratios=[1.0, 0.5] * n)
    for i, (frames, att) in enumerate(zip(frames_list, attention_list, strict=True)):
        frames, att = np.asarray(frames), np.asarray(att, dtype=np.float64)
        t = frames.shape[0]
        ax_img, ax_bar = axes[2 * i], axes[2 * i + 1]
        # Extent maps frame j to x in [j - 0.5, j + 0.5], so bars sit under their frames.
        ax_img.imshow(_thumbnail_strip(frames, thumb_height), extent=(-0.5, t - 0.5, 0, 1), aspect="auto")
        ax_img.set_xlim(-0.5, t - 0.5)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_title(titles[i] if titles is not None else f"clip {i}", fontsize=9)
        colors = np.where(np.arange(t) == np.argmax(att), "tab:red", "tab:blue")
        ax_bar.bar(np.arange(t), att, width=0.8, color=colors)
        ax_bar.set_xlim(-0.5, t - 0.5)
        ax_bar.set_ylabel("attention", fontsize=8)
        ax_bar.tick_params(labelsize=7)
    axes[-1].set_xlabel("frame")
    return fig
