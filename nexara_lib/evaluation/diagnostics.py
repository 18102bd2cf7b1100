"""Per-class diagnostics for notebook 04: tables, figures and metrics.json.

Figures are built as ``matplotlib.figure.Figure`` objects (not through pyplot),
returned and never shown: the notebook displays them once, scripts save them,
and no global pyplot state piles up in long runs. Thresholds are chosen on
validation (``evaluation.choose_threshold``) and only applied to test.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from nexara_lib.io import to_jsonable
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.evaluation.metrics import (Predictions, binary_metrics, bootstrap_ci, check_labels,
                         check_probabilities, choose_threshold, expected_calibration_error, apply_temperature,
                         fit_temperature, metric_function, reliability_curve, sweep_thresholds)

CI_METRICS = ("accuracy", "balanced_accuracy", "acc_nonviolent", "acc_violent", "class_gap", "f1_violent", "fpr",
              "roc_auc")  # every headline metric is reported with a bootstrap CI


def _check_preds_by_split(preds_by_split: Mapping[str, Predictions], what: str) -> None:
    if not preds_by_split:
        raise ValueError(f"{what}: pass a non-empty dict like {{'val': Predictions(...), 'test': Predictions(...)}}")
    for name, preds in preds_by_split.items():
        if not isinstance(preds, Predictions):
            raise ValueError(f"{what}: entry {name!r} must be a Predictions, got {type(preds).__name__}")


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------
def metrics_with_ci(preds: Predictions, threshold: float, n_bootstrap: int = 1000, seed: int = 0,
                    alpha: float = 0.05) -> dict:
    """``binary_metrics`` at ``threshold`` plus bootstrap CIs for every metric in ``CI_METRICS``.

    Returns:
        the metrics dict with extra ``<metric>_ci_low`` / ``<metric>_ci_high`` keys.
    """
    out = binary_metrics(preds.y_true, preds.prob, threshold)
    for name in CI_METRICS:
        _, low, high = bootstrap_ci(preds.y_true, preds.prob, metric_function(name, threshold),
                                    n=n_bootstrap, seed=seed, alpha=alpha)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return out


def per_class_table(preds_by_split: Mapping[str, Predictions], thresholds: Mapping[str, float],
                    n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (split, threshold name) with per-class metrics and 95% CIs.

    Args:
        preds_by_split: e.g. {"val": val_preds, "test": test_preds}.
        thresholds: e.g. {"balanced_accuracy": 0.47, "max_fpr": 0.81}, chosen on validation.
        n_bootstrap, seed, alpha: bootstrap settings of the CI columns.

    Returns:
        DataFrame indexed by (split, threshold_name).
    """
    _check_preds_by_split(preds_by_split, "per_class_table")
    if not thresholds:
        raise ValueError("per_class_table: pass at least one named threshold, e.g. {'default': 0.5}")
    columns = ["threshold", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy",
               "balanced_accuracy_ci_low", "balanced_accuracy_ci_high", "acc_nonviolent", "acc_nonviolent_ci_low",
               "acc_nonviolent_ci_high", "acc_violent", "acc_violent_ci_low", "acc_violent_ci_high",
               "class_gap", "class_gap_ci_low", "class_gap_ci_high", "precision_nonviolent", "recall_nonviolent", "f1_nonviolent", "precision_violent",
               "recall_violent", "f1_violent", "fpr", "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "pr_auc"]
    rows, index = [], []
    for split, preds in preds_by_split.items():
        for name, threshold in thresholds.items():
            m = metrics_with_ci(preds, threshold, n_bootstrap, seed, alpha)
            rows.append([m[c] for c in columns])
            index.append((split, name))
    return pd.DataFrame(rows, columns=columns, index=pd.MultiIndex.from_tuples(index, names=["split", "threshold_name"]))


def _align_manifest(manifest_rows: pd.DataFrame, preds: Predictions, id_column: str | None) -> pd.DataFrame:
    if id_column is None:
        if len(manifest_rows) != len(preds):
            raise ValueError(f"per_source_table: manifest has {len(manifest_rows)} rows but preds has {len(preds)}; "
                             "with id_column=None the rows must be the predicted clips in the same order")
        return manifest_rows.reset_index(drop=True)
    if preds.clip_ids is None:
        raise ValueError("per_source_table: preds has no clip_ids to join on; build Predictions with clip_ids=... "
                         "or pass id_column=None with manifest rows in prediction order")
    if id_column not in manifest_rows.columns:
        raise ValueError(f"per_source_table: manifest has no column {id_column!r} (columns: "
                         f"{list(manifest_rows.columns)}); pass id_column= the column holding the clip ids")
    if manifest_rows[id_column].duplicated().any():
        raise ValueError(f"per_source_table: manifest column {id_column!r} has duplicate ids; it must identify clips")
    missing = set(preds.clip_ids) - set(manifest_rows[id_column])
    if missing:
        raise ValueError(f"per_source_table: {len(missing)} predicted clip ids are not in manifest column "
                         f"{id_column!r}, e.g. {sorted(map(str, missing))[:5]}")
    return manifest_rows.set_index(id_column).loc[list(preds.clip_ids)].reset_index()


def per_source_table(manifest_rows: pd.DataFrame, preds: Predictions, threshold: float,
                     id_column: str | None = "clip_id") -> pd.DataFrame:
    """Per-class metrics overall and per ``source`` (and per ``group`` if that column exists).

    Args:
        manifest_rows: manifest rows with a ``source`` column (optional ``group``, ``label``).
        preds: predictions of one split, with ``clip_ids`` matching ``manifest_rows[id_column]``.
        threshold: operating threshold chosen on validation.
        id_column: manifest column holding the clip ids; None = rows already in prediction order.

    Returns:
        DataFrame with columns by, value, n, n_nonviolent, n_violent, accuracy, balanced_accuracy,
        acc_nonviolent, acc_violent, class_gap, fpr, roc_auc.
    """
    if "source" not in manifest_rows.columns:
        raise ValueError(f"per_source_table: manifest has no 'source' column (columns: {list(manifest_rows.columns)})")
    rows = _align_manifest(manifest_rows, preds, id_column)
    if "label" in rows.columns and not np.array_equal(rows["label"].to_numpy(dtype=np.int64), preds.y_true):
        raise ValueError("per_source_table: manifest labels differ from preds.y_true after aligning clips; "
                         "the manifest rows and predictions do not describe the same clips")
    keys = ("n", "n_nonviolent", "n_violent", "accuracy", "balanced_accuracy", "acc_nonviolent", "acc_violent",
            "class_gap", "fpr", "roc_auc")
    out = [{"by": "all", "value": "all", **{k: binary_metrics(preds.y_true, preds.prob, threshold)[k] for k in keys}}]
    for by in ("source", "group"):
        # a group breakdown says something only when groups hold several clips (not one hash per clip)
        if by not in rows.columns or (by == "group" and rows[by].value_counts().max() < 2):
            continue
        for value, part in rows.groupby(by, sort=True, dropna=False):
            idx = part.index.to_numpy()
            m = binary_metrics(preds.y_true[idx], preds.prob[idx], threshold)
            out.append({"by": by, "value": value, **{k: m[k] for k in keys}})
    return pd.DataFrame(out)


def hardest_misclassified(preds: Predictions, threshold: float, k: int = 6) -> pd.DataFrame:
    """The ``k`` misclassified clips the model was most confident about.

    Returns:
        DataFrame (index, clip_id, y_true, pred, prob, margin) sorted by margin
        = |prob - threshold|, largest first; ``index`` is the row in ``preds``.
    """
    if not isinstance(preds, Predictions):
        raise ValueError(f"hardest_misclassified needs Predictions, got {type(preds).__name__}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    pred = preds.pred(threshold)
    wrong = np.flatnonzero(pred != preds.y_true)
    margin = np.abs(preds.prob[wrong] - threshold)
    order = wrong[np.argsort(-margin, kind="stable")][:k]
    ids = preds.clip_ids if preds.clip_ids is not None else tuple(range(len(preds)))
    return pd.DataFrame({"index": order, "clip_id": [ids[i] for i in order], "y_true": preds.y_true[order],
                         "pred": pred[order], "prob": preds.prob[order],
                         "margin": np.abs(preds.prob[order] - threshold)})


def threshold_sweep(preds: Predictions, thresholds=None) -> pd.DataFrame:
    """Per-class metrics over a grid of thresholds (default 0.00, 0.01, ..., 1.00).

    Returns:
        DataFrame with threshold, accuracy, balanced_accuracy, acc_nonviolent,
        acc_violent, class_gap, fpr, precision_violent.
    """
    if not isinstance(preds, Predictions):
        raise ValueError(f"threshold_sweep needs Predictions, got {type(preds).__name__}")
    grid = np.linspace(0.0, 1.0, 101) if thresholds is None else thresholds
    s = sweep_thresholds(preds.y_true, preds.prob, grid)
    return pd.DataFrame({"threshold": s["threshold"], "accuracy": s["accuracy"],
                         "balanced_accuracy": s["balanced_accuracy"], "acc_nonviolent": s["tnr"],
                         "acc_violent": s["tpr"], "class_gap": np.abs(s["tpr"] - s["tnr"]), "fpr": s["fpr"],
                         "precision_violent": s["precision"]})


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------
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
    for ax, values, name in zip(axes, (counts, rates), ("counts", "fraction of true class")):
        ax.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0, vmax=1)  # colour by rate in both: comparable
        for t in (0, 1):
            for q in (0, 1):
                text = f"{values[t, q]:d}" if values is counts else f"{values[t, q]:.1%}"
                ax.text(q, t, text, ha="center", va="center",
                        color="white" if np.nan_to_num(rates[t, q]) > 0.5 else "black", fontsize=12)
        ax.set_xticks([0, 1], [f"pred {n}" for n in CLASS_NAMES])
        ax.set_yticks([0, 1], [f"true {n}" for n in CLASS_NAMES])
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    return fig


def roc_pr_figure(preds_by_split: Mapping[str, Predictions], operating_points: Mapping[str, float] | None = None) -> Figure:
    """ROC (left) and precision-recall (right) curves per split, AUCs in the legends.

    Args:
        preds_by_split: e.g. {"val": val_preds, "test": test_preds}.
        operating_points: optional {name: threshold} marked on every curve.

    Returns:
        Figure with two axes.
    """
    _check_preds_by_split(preds_by_split, "roc_pr_figure")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_roc, ax_pr = fig.subplots(1, 2)
    markers = "oXsD^v"
    for split, preds in preds_by_split.items():
        y, p = preds.y_true, preds.prob
        if y.min() == y.max():
            raise ValueError(f"roc_pr_figure: split {split!r} has only one class; ROC/PR curves need both")
        m = binary_metrics(y, p)
        fpr, tpr, _ = roc_curve(y, p)
        line, = ax_roc.plot(fpr, tpr, label=f"{split} (ROC AUC {m['roc_auc']:.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        ax_pr.plot(recall, precision, color=line.get_color(), label=f"{split} (PR AUC {m['pr_auc']:.3f})")
        ax_pr.axhline(y.mean(), color=line.get_color(), lw=0.8, ls=":")  # chance level = prevalence
        for (name, t), marker in zip((operating_points or {}).items(), markers):
            mt = binary_metrics(y, p, t)
            ax_roc.plot(mt["fpr"], mt["recall_violent"], marker, color=line.get_color(),
                        label=f"{split} @ {name} ({t:.2f})")
            if not np.isnan(mt["precision_violent"]):
                ax_pr.plot(mt["recall_violent"], mt["precision_violent"], marker, color=line.get_color())
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate (violent recall)", title="ROC",
               xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax_pr.set(xlabel="recall (violent)", ylabel="precision (violent)", title="Precision-recall",
              xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax_roc.legend(loc="lower right", fontsize=8)
    ax_pr.legend(loc="lower left", fontsize=8)
    return fig


def threshold_sweep_figure(sweep: pd.DataFrame, chosen: Mapping[str, float] | None = None,
                           title: str | None = None) -> Figure:
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
        raise ValueError(f"threshold_sweep_figure needs the output of threshold_sweep; missing {sorted(needed - set(sweep.columns))}")
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    t = sweep["threshold"]
    ax.plot(t, sweep["balanced_accuracy"], lw=2.2, label="balanced accuracy")
    ax.plot(t, sweep["acc_violent"], label="accuracy violent (recall)")
    ax.plot(t, sweep["acc_nonviolent"], label="accuracy non-violent")
    ax.plot(t, sweep["fpr"], ls=":", label="false positive rate")
    for (name, value), color in zip((chosen or {}).items(), ("black", "tab:red", "tab:purple", "tab:brown")):
        ax.axvline(value, color=color, ls="--", lw=1.2, label=f"{name}: {value:.3f}")
    ax.set(xlabel="threshold (violent if prob >= threshold)", ylabel="rate", ylim=(-0.02, 1.02),
           title=title or "Threshold sweep")
    ax.legend(fontsize=8, loc="best")
    return fig


def reliability_figure(preds_by_split: Mapping[str, Predictions], n_bins: int = 10) -> Figure:
    """Reliability diagram (top, ECE in the legend) and histogram of probabilities (bottom).

    Returns:
        Figure with two axes.
    """
    _check_preds_by_split(preds_by_split, "reliability_figure")
    fig = Figure(figsize=(5.5, 6), layout="constrained")
    ax, ax_hist = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    width = 1.0 / n_bins / (len(preds_by_split) + 1)
    for i, (split, preds) in enumerate(preds_by_split.items()):
        curve = reliability_curve(preds.y_true, preds.prob, n_bins)
        ece = expected_calibration_error(preds.y_true, preds.prob, n_bins)
        used = curve["count"] > 0
        line, = ax.plot(curve["mean_prob"][used], curve["frac_violent"][used], "o-", label=f"{split} (ECE {ece:.3f})")
        ax_hist.bar(curve["bin_lower"] + (i + 0.5) * width, curve["count"], width=width, align="edge",
                    color=line.get_color(), label=split)
    ax.set(ylabel="observed fraction violent", title="Reliability", xlim=(0, 1), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, loc="upper left")
    ax_hist.set(xlabel="predicted probability of violent", ylabel="clips")
    return fig


def _thumbnail_strip(frames: np.ndarray, thumb_height: int) -> np.ndarray:
    # Stride-subsample instead of resizing: no OpenCV needed and good enough for thumbnails.
    step = max(1, frames.shape[1] // thumb_height)
    small = frames[:, ::step, ::step]
    return np.concatenate(list(small), axis=1)


def attention_gallery_figure(frames_list: Sequence[np.ndarray], attention_list: Sequence[np.ndarray],
                             titles: Sequence[str] | None = None, thumb_height: int = 64) -> Figure:
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
        raise ValueError(f"attention_gallery_figure: {len(frames_list)} clips but {len(attention_list)} attention arrays")
    if titles is not None and len(titles) != len(frames_list):
        raise ValueError(f"attention_gallery_figure: {len(frames_list)} clips but {len(titles)} titles")
    for i, (frames, att) in enumerate(zip(frames_list, attention_list)):
        frames, att = np.asarray(frames), np.asarray(att)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"attention_gallery_figure: clip {i} frames must be (T, H, W, 3) uint8 RGB, "
                             f"got shape {frames.shape} dtype {frames.dtype}")
        if att.shape != (frames.shape[0],) or not np.isfinite(att).all():
            raise ValueError(f"attention_gallery_figure: clip {i} attention must be ({frames.shape[0]},) finite "
                             f"weights, one per frame; got shape {att.shape}")
    n = len(frames_list)
    t_max = max(np.asarray(f).shape[0] for f in frames_list)
    fig = Figure(figsize=(min(18.0, max(6.0, 0.75 * t_max)), 2.3 * n), layout="constrained")
    axes = fig.subplots(2 * n, 1, height_ratios=[1.0, 0.5] * n)
    for i, (frames, att) in enumerate(zip(frames_list, attention_list)):
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


def threshold_slider(y_true, prob, initial: float = 0.5, step: float = 0.01):
    """An ipywidgets slider that redraws the confusion matrix and metrics at the chosen threshold.

    For exploration only: the reported operating thresholds come from ``choose_threshold``.

    Returns:
        ``ipywidgets.interactive``; its ``.result`` is the ``binary_metrics`` dict at the current value.
    """
    import ipywidgets as widgets  # lazy: the library must import without a notebook stack
    from IPython.display import display

    y, p = check_labels(y_true), check_probabilities(prob)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but prob has {len(p)}")
    if not 0 <= initial <= 1:
        raise ValueError(f"initial threshold must be in [0, 1], got {initial!r}")

    def show(threshold):
        m = binary_metrics(y, p, threshold)
        title = (f"threshold {threshold:.2f}: accuracy {m['accuracy']:.3f}, balanced {m['balanced_accuracy']:.3f}, "
                 f"gap {m['class_gap']:.3f}, FPR {m['fpr']:.3f}")
        display(confusion_matrix_figure(y, (p >= threshold).astype(np.int64), title=title))
        return m

    slider = widgets.FloatSlider(value=initial, min=0.0, max=1.0, step=step, description="threshold",
                                 continuous_update=False, readout_format=".2f")
    return widgets.interactive(show, threshold=slider)


# --------------------------------------------------------------------------
# metrics.json
# --------------------------------------------------------------------------
def metrics_report(val_preds: Predictions, test_preds: Predictions, max_fpr: float = 0.03,
                   n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05, n_bins: int = 10) -> dict:
    """The content of metrics.json: thresholds chosen on validation, metrics with CIs on val and test.

    Args:
        val_preds: ``Predictions(split="val")``; the only data used to choose anything.
        test_preds: ``Predictions(split="test")``; only evaluated.
        max_fpr: FPR cap of the second operating point.
        n_bootstrap, seed, alpha: bootstrap CI settings.
        n_bins: reliability bins for ECE.

    Returns:
        JSON-serializable dict (NaN written as null).
    """
    if not isinstance(test_preds, Predictions) or test_preds.split != "test":
        raise ValueError("metrics_report: test_preds must be Predictions(split='test', ...); got "
                         f"{getattr(test_preds, 'split', type(test_preds).__name__)!r}")
    thresholds = {"default": 0.5,
                  "balanced_accuracy": choose_threshold(val_preds, "balanced_accuracy"),
                  "max_fpr": choose_threshold(val_preds, "max_fpr", max_fpr=max_fpr)}
    temperature = fit_temperature(val_preds)
    report = {"chosen_on": "val", "thresholds": thresholds, "max_false_positive_rate": max_fpr,
              "bootstrap": {"n": n_bootstrap, "seed": seed, "alpha": alpha, "resampling": "stratified by class"},
              "class_names": list(CLASS_NAMES), "metrics": {}, "calibration": {"temperature": temperature,
                                                                                 "n_bins": n_bins}}
    for split, preds in (("val", val_preds), ("test", test_preds)):
        report["metrics"][split] = {name: metrics_with_ci(preds, t, n_bootstrap, seed, alpha)
                                    for name, t in thresholds.items()}
        report["calibration"][split] = {
            "ece": expected_calibration_error(preds.y_true, preds.prob, n_bins),
            "ece_after_temperature": expected_calibration_error(preds.y_true, apply_temperature(preds.prob, temperature),
                                                                n_bins)}
    return to_jsonable(report)
