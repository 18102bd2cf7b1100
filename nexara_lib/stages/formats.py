"""How every number, duration and column name is written in notebooks and reports: one format everywhere.

Friendly labels for column and key names (``balanced_accuracy`` -> "balanced accuracy"), the kind of a value guessed
from its column name (percent, percentage points, duration, count, class label, ...) and the text of one value in
that kind. :mod:`nexara_lib.stages.tables` builds its HTML tables from these; the index page formats its headline
figures with them.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from nexara_lib.labels import CLASS_NAMES

KNOWN_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "acc_violent": "accuracy (violent)",
    "acc_nonviolent": "accuracy (non-violent)",
    "class_gap": "gap between the classes",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "auc": "AUC",
    "ece": "calibration error (ECE)",
    "fpr": "false-positive rate",
    "tpr": "true-positive rate",
    "tnr": "true-negative rate",
    "fnr": "false-negative rate",
    "f1": "F1",
    "f1_violent": "F1 (violent)",
    "precision_violent": "precision (violent)",
    "recall_violent": "recall (violent)",
    "n": "clips",
    "n_clips": "clips",
    "clips_per_s": "clips per second",
    "seconds_per_epoch": "time per epoch",
    "p_value": "p-value",
    "val_accuracy": "validation accuracy",
    "val_loss": "validation loss",
    "mcc": "MCC",
    "lr": "learning rate",
    "learning_rate": "learning rate",
    "brier": "Brier score",
    "fps": "frames per second",
    "clip_id": "clip",
    "class_name": "class",
    "label": "class",
    "y_true": "true class",
    "true_label": "true class",
    "y_pred": "predicted class",
    "pred": "predicted class",
    "prediction": "predicted class",
    "predicted_label": "predicted class",
    "prob": "probability of violence",
}
_ACRONYMS = {
    "auc": "AUC",
    "roc": "ROC",
    "pr": "PR",
    "f1": "F1",
    "ece": "ECE",
    "fpr": "FPR",
    "tpr": "TPR",
    "id": "ID",
    "tta": "TTA",
    "gpu": "GPU",
    "cpu": "CPU",
    "fps": "FPS",
    "mcc": "MCC",
    "ci": "CI",
    "acc": "accuracy",
    "val": "validation",
    "nonviolent": "non-violent",
    "prob": "probability",
    "num": "number",
    "pct": "percent",
    "avg": "average",
    "std": "std. dev.",
}
LABEL_COLUMNS = frozenset(
    {
        "label",
        "y_true",
        "y_pred",
        "true",
        "truth",
        "predicted",
        "prediction",
        "pred",
        "class",
        "true_label",
        "predicted_label",
    }
)
_PERCENT_WORDS = ("accuracy", "recall", "precision", "agreement", "coverage", "sensitivity", "specificity", "fraction")
_PERCENT_TOKENS = {"acc", "f1", "auc", "rate", "fpr", "tpr", "tnr", "fnr", "gap", "share", "auroc", "auprc"}
_DELTA_WORDS = ("delta", "diff", "change", "gain", "improvement")
_DECIMAL_TOKENS = {
    "prob",
    "probability",
    "probabilities",
    "threshold",
    "weight",
    "weights",
    "temperature",
    "loss",
    "ece",
    "brier",
    "logit",
}
_DURATION_TOKENS = {"seconds", "second", "sec", "secs", "latency", "time", "duration", "elapsed", "runtime"}
_COUNT_TOKENS = {
    "count",
    "clips",
    "frames",
    "videos",
    "samples",
    "epochs",
    "epoch",
    "rows",
    "files",
    "steps",
    "support",
    "errors",
    "batch",
    "size",
    "total",
}


def friendly_label(name: Any) -> str:
    """Words for a column or key name: ``balanced_accuracy`` -> ``balanced accuracy``.

    Known names come from :data:`KNOWN_LABELS`; otherwise underscores become spaces, a trailing
    ``_s``/``_ms`` is dropped (the value carries its unit), ``n_x`` becomes ``x`` and
    ``_ci_low``/``_ci_high`` become `` 95% CI low/high``. A string that already holds a space or a
    capital is returned unchanged; a tuple (MultiIndex) is joined with `` · ``.
    """
    if isinstance(name, tuple):
        return " · ".join(friendly_label(part) for part in name if str(part) != "")
    if not isinstance(name, str):
        return "" if name is None else str(name)
    if name in KNOWN_LABELS:
        return KNOWN_LABELS[name]
    if " " in name or name != name.lower() or not name.strip("_"):
        return name
    for suffix, phrase in (("_ci_low", " 95% CI low"), ("_ci_high", " 95% CI high"), ("_per_s", " per second")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return friendly_label(name[: -len(suffix)]) + phrase
    if name.startswith("n_") and len(name) > 2:
        return friendly_label(name[2:])
    words = [w for w in re.sub(r"(?<=.)_m?s$", "", name).split("_") if w]
    which = CLASS_NAMES[words.pop() == "violent"] if len(words) > 1 and words[-1] in ("violent", "nonviolent") else ""
    text = " ".join(_ACRONYMS.get(w, w) for w in words)
    return f"{text} ({which})" if which else text


def column_kind(column: Any) -> str | None:
    """How numbers under this name are written: pvalue, small, number, ms, duration, delta,
    percent, decimal, count, or None (plain)."""
    name = re.sub(r"[^a-z0-9]+", "_", str(column).strip().lower()).strip("_")
    name = re.sub(r"_ci_(low|high)$", "", name)
    if not name:
        return None
    tokens = set(name.split("_"))
    if name in ("p", "p_val") or "p_value" in name or "pvalue" in tokens:
        return "pvalue"
    if "learning_rate" in name or "weight_decay" in name or tokens & {"lr", "eps", "epsilon"}:
        return "small"
    if re.search(r"per_s(ec|econd)?(_|$)|frame_rate|sample_rate|(clips|frames|windows|items|it)_s$", name) or tokens & {
        "fps",
        "throughput",
    }:
        return "number"
    if name.endswith(("_s", "_ms")):
        return "ms" if name.endswith("_ms") else "duration"
    if any(word in name for word in _DELTA_WORDS):
        return "delta"
    if any(word in name for word in _PERCENT_WORDS) or tokens & _PERCENT_TOKENS:
        return "percent"
    if tokens & _DECIMAL_TOKENS:
        return "decimal"
    if tokens & _DURATION_TOKENS:
        return "duration"
    if name == "n" or name.startswith("n_") or tokens & _COUNT_TOKENS:
        return "count"
    return None


def is_missing(value: Any) -> bool:
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, (np.datetime64, np.timedelta64)) and bool(np.isnat(value)))
    )


def _as_label(value: Any) -> int | None:
    """0 or 1 when ``value`` is a class label (int, numpy int, integral float, "0"/"1"), else None."""
    if isinstance(value, str):
        return int(value.strip()) if value.strip() in ("0", "1") else None
    return int(value) if isinstance(value, (int, np.integer, float, np.floating)) and value in (0, 1) else None


def value_context(key: Any, fallback: Any) -> Any:
    """The name that decides how a mapping's value is written: its key when that says something."""
    return (
        key
        if isinstance(key, str) and (column_kind(key) or str(key).strip().lower() in LABEL_COLUMNS)
        else fallback or ""
    )


def format_seconds(seconds: float) -> str:
    """A duration, the same everywhere: "3.2 ms", "0.9 s", "42.0 s", "6 min 15 s", "1 h 02 min"."""
    size = abs(seconds)
    if size >= 100:
        minutes, secs = divmod(int(round(size)), 60)
        hours, minutes = divmod(minutes, 60)
        return ("-" if seconds < 0 else "") + (
            f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
        )
    return f"{seconds:.1f} s" if size >= 0.1 or size == 0 else f"{seconds * 1000:.1f} ms"


def format_number(value: float, kind: str | None) -> str:
    """A number written for its kind (``column_kind``: percent, delta, duration, decimal, pvalue, count, ...; None =
    plain), never in scientific notation."""
    size, sign = abs(value), "< " if value > 0 else "> -"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if kind == "pvalue":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "small":
        return np.format_float_positional(value, precision=3, fractional=False, trim="-")
    if kind == "percent" and size <= 1:
        return f"{value * 100:.1f}%"
    if kind == "delta" and size <= 1:
        return f"{value * 100:+.1f} pp"
    if kind == "decimal":
        return sign + "0.001" if 0 < size < 0.001 else f"{value:,.3f}"
    if kind in ("duration", "ms"):
        return format_seconds(value / 1000 if kind == "ms" else value)
    if (kind == "count" and value.is_integer()) or size >= 1000:
        return f"{value:,.0f}"
    if size == 0 or size >= 0.0001:
        return f"{value:.{3 if size >= 1 else 4}f}".rstrip("0").rstrip(".")
    return sign + "0.0001"


def format_value(value: Any, column: Any = "") -> str:
    """Plain (unescaped) display text for one value; ``column`` (its column or key name) decides the unit.

    Fractions under metric names become percents ("93.5%"), deltas percentage points ("+1.6 pp"),
    probabilities/thresholds/weights/losses fixed decimals ("0.512", p-values "< 0.001"),
    durations seconds or milliseconds ("0.9 s", "3.2 ms"), ints get thousands separators, no float
    is ever written in scientific notation, missing values are "n/a", bools "yes"/"no", 0/1 under
    a label column the class names, lists "a, b, c" ("none" when empty), dicts "key: value, ...".
    """
    if is_missing(value):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    label = _as_label(value) if str(column).strip().lower() in LABEL_COLUMNS else None
    if label is not None:
        return CLASS_NAMES[label]
    if isinstance(value, str):
        return value
    if isinstance(value, pd.Series):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return (
            ", ".join(f"{friendly_label(k)}: {format_value(v, value_context(k, column))}" for k, v in value.items())
            or "none"
        )
    if isinstance(value, (np.ndarray, pd.Index)):
        value = np.asarray(value).ravel().tolist()
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, column) for v in value) or "none"
    if isinstance(value, (datetime.timedelta, np.timedelta64)):
        return format_seconds(pd.Timedelta(value).total_seconds())
    if isinstance(value, (int, np.integer)):
        kind = column_kind(column)
        return format_number(float(value), kind) if kind in ("duration", "ms") else f"{int(value):,}"
    return format_number(float(value), column_kind(column)) if isinstance(value, (float, np.floating)) else str(value)


# Stream views as people say them (transform registry names, use "stream"); another view reads as its name.
VIEW_WORDS = {
    "identity": "whole frame",
    "motion_crop": "motion crop",
    "tiles": "tiles",
    "motion_image": "motion image",
    "motion_image_crop": "motion image crop",
}


def stream_set_words(streams: str | list[str] | tuple[str, ...]) -> str:
    """A stream set in words: ``identity+motion_crop`` -> "whole frame + motion crop"; an item with its own
    backbone keeps it: ``flow:identity`` -> "whole frame (flow)"."""
    items = streams.split("+") if isinstance(streams, str) else list(streams)
    words = []
    for item in items:
        backbone, _, view = str(item).rpartition(":")
        text = VIEW_WORDS.get(view, view.replace("_", " "))
        words.append(f"{text} ({backbone})" if backbone else text)
    return " + ".join(words)
