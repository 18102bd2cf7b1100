"""Per-class diagnostic tables for notebook 04 and the content of metrics.json.

Thresholds are chosen on validation (``evaluation.thresholds.choose_threshold``) and
only applied to test. The figures live in ``evaluation.figures``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from nexara_lib.evaluation.calibration import apply_temperature, expected_calibration_error, fit_temperature
from nexara_lib.evaluation.metrics import binary_metrics, metric_function
from nexara_lib.evaluation.predictions import Predictions, check_preds_by_split
from nexara_lib.evaluation.stats import bootstrap_ci
from nexara_lib.evaluation.thresholds import choose_threshold, sweep_thresholds
from nexara_lib.io import to_jsonable
from nexara_lib.labels import CLASS_NAMES

CI_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "acc_nonviolent",
    "acc_violent",
    "class_gap",
    "f1_violent",
    "fpr",
    "roc_auc",
)  # every headline metric is reported with a bootstrap CI


def metrics_with_ci(
    preds: Predictions, threshold: float, n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """``binary_metrics`` at ``threshold`` plus bootstrap CIs for every metric in ``CI_METRICS``.

    Returns:
        the metrics dict with extra ``<metric>_ci_low`` / ``<metric>_ci_high`` keys.
    """
    out = binary_metrics(preds.y_true, preds.prob, threshold)
    for name in CI_METRICS:
        _, low, high = bootstrap_ci(
            preds.y_true, preds.prob, metric_function(name, threshold), n=n_bootstrap, seed=seed, alpha=alpha
        )
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return out


def per_class_table(
    preds_by_split: Mapping[str, Predictions],
    thresholds: Mapping[str, float],
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per (split, threshold name) with per-class metrics and 95% CIs.

    Args:
        preds_by_split: e.g. {"val": val_preds, "test": test_preds}.
        thresholds: e.g. {"balanced_accuracy": 0.47, "max_fpr": 0.81}, chosen on validation.
        n_bootstrap, seed, alpha: bootstrap settings of the CI columns.

    Returns:
        DataFrame indexed by (split, threshold_name).
    """
    check_preds_by_split(preds_by_split, "per_class_table")
    if not thresholds:
        raise ValueError("per_class_table: pass at least one named threshold, e.g. {'default': 0.5}")
    columns = [
        "threshold",
        "n",
        "accuracy",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "balanced_accuracy",
        "balanced_accuracy_ci_low",
        "balanced_accuracy_ci_high",
        "acc_nonviolent",
        "acc_nonviolent_ci_low",
        "acc_nonviolent_ci_high",
        "acc_violent",
        "acc_violent_ci_low",
        "acc_violent_ci_high",
        "class_gap",
        "class_gap_ci_low",
        "class_gap_ci_high",
        "precision_nonviolent",
        "recall_nonviolent",
        "f1_nonviolent",
        "precision_violent",
        "recall_violent",
        "f1_violent",
        "fpr",
        "roc_auc",
        "roc_auc_ci_low",
        "roc_auc_ci_high",
        "pr_auc",
    ]
    rows, index = [], []
    for split, preds in preds_by_split.items():
        for name, threshold in thresholds.items():
            m = metrics_with_ci(preds, threshold, n_bootstrap, seed, alpha)
            rows.append([m[c] for c in columns])
            index.append((split, name))
    return pd.DataFrame(
        rows, columns=columns, index=pd.MultiIndex.from_tuples(index, names=["split", "threshold_name"])
    )


def _align_manifest(manifest_rows: pd.DataFrame, preds: Predictions, id_column: str | None) -> pd.DataFrame:
    if id_column is None:
        if len(manifest_rows) != len(preds):
            raise ValueError(
                f"per_source_table: manifest has {len(manifest_rows)} rows but preds has {len(preds)}; "
                "with id_column=None the rows must be the predicted clips in the same order"
            )
        return manifest_rows.reset_index(drop=True)
    if preds.clip_ids is None:
        raise ValueError(
            "per_source_table: preds has no clip_ids to join on; build Predictions with clip_ids=... "
            "or pass id_column=None with manifest rows in prediction order"
        )
    if id_column not in manifest_rows.columns:
        raise ValueError(
            f"per_source_table: manifest has no column {id_column!r} (columns: "
            f"{list(manifest_rows.columns)}); pass id_column= the column holding the clip ids"
        )
    if manifest_rows[id_column].duplicated().any():
        raise ValueError(f"per_source_table: manifest column {id_column!r} has duplicate ids; it must identify clips")
    missing = set(preds.clip_ids) - set(manifest_rows[id_column])
    if missing:
        raise ValueError(
            f"per_source_table: {len(missing)} predicted clip ids are not in manifest column "
            f"{id_column!r}, e.g. {sorted(map(str, missing))[:5]}"
        )
    return manifest_rows.set_index(id_column).loc[list(preds.clip_ids)].reset_index()


def per_source_table(
    manifest_rows: pd.DataFrame, preds: Predictions, threshold: float, id_column: str | None = "clip_id"
) -> pd.DataFrame:
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
        raise ValueError(
            "per_source_table: manifest labels differ from preds.y_true after aligning clips; "
            "the manifest rows and predictions do not describe the same clips"
        )
    keys = (
        "n",
        "n_nonviolent",
        "n_violent",
        "accuracy",
        "balanced_accuracy",
        "acc_nonviolent",
        "acc_violent",
        "class_gap",
        "fpr",
        "roc_auc",
    )
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
    return pd.DataFrame(
        {
            "index": order,
            "clip_id": [ids[i] for i in order],
            "y_true": preds.y_true[order],
            "pred": pred[order],
            "prob": preds.prob[order],
            "margin": np.abs(preds.prob[order] - threshold),
        }
    )


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
    return pd.DataFrame(
        {
            "threshold": s["threshold"],
            "accuracy": s["accuracy"],
            "balanced_accuracy": s["balanced_accuracy"],
            "acc_nonviolent": s["tnr"],
            "acc_violent": s["tpr"],
            "class_gap": np.abs(s["tpr"] - s["tnr"]),
            "fpr": s["fpr"],
            "precision_violent": s["precision"],
        }
    )


def metrics_report(
    val_preds: Predictions,
    test_preds: Predictions,
    max_fpr: float = 0.03,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 10,
) -> dict:
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
        raise ValueError(
            "metrics_report: test_preds must be Predictions(split='test', ...); got "
            f"{getattr(test_preds, 'split', type(test_preds).__name__)!r}"
        )
    thresholds = {
        "default": 0.5,
        "balanced_accuracy": choose_threshold(val_preds, "balanced_accuracy"),
        "max_fpr": choose_threshold(val_preds, "max_fpr", max_fpr=max_fpr),
    }
    temperature = fit_temperature(val_preds)
    report: dict[str, Any] = {
        "chosen_on": "val",
        "thresholds": thresholds,
        "max_false_positive_rate": max_fpr,
        "bootstrap": {"n": n_bootstrap, "seed": seed, "alpha": alpha, "resampling": "stratified by class"},
        "class_names": list(CLASS_NAMES),
        "metrics": {},
        "calibration": {"temperature": temperature, "n_bins": n_bins},
    }
    for split, preds in (("val", val_preds), ("test", test_preds)):
        report["metrics"][split] = {
            name: metrics_with_ci(preds, t, n_bootstrap, seed, alpha) for name, t in thresholds.items()
        }
        report["calibration"][split] = {
            "ece": expected_calibration_error(preds.y_true, preds.prob, n_bins),
            "ece_after_temperature": expected_calibration_error(
                preds.y_true, apply_temperature(preds.prob, temperature), n_bins
            ),
        }
    return to_jsonable(report)
