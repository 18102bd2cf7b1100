"""Are the exports the model? Parity and latency tables of exported heads against the Keras model.

``head_parity`` scores the same windows with the Keras reference and each exported variant: the largest
and mean |delta p(violent)|, how often the labels agree at the run's threshold (``labels.predict_labels``,
``>=``), the ROC AUC of each and its change, and whether the variant stays within its tolerance
(``TOLERANCES``: max |delta p| allowed vs Keras). ``head_latency`` times each head per call and per window
at a few batch sizes (median over repeats after warm-up). ``probe_windows`` makes the small seeded batch
that ``export_head`` checks every fresh export on.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from nexara_lib.deploy.head import check_windows
from nexara_lib.evaluation.metrics import roc_auc
from nexara_lib.labels import predict_labels
from nexara_lib.training.layers import INPUT_NORMALIZATION_NAME

# max |delta p(violent)| allowed vs the Keras model, per exported variant
TOLERANCES = {"float32": 1e-4, "float16": 1e-2, "int8": 2e-2}

PARITY_COLUMNS = (
    "variant",
    "max |Δp|",
    "mean |Δp|",
    "label agreement",
    "AUC Keras",
    "AUC variant",
    "AUC change",
    "tolerance",
    "within tolerance",
)
LATENCY_COLUMNS = ("variant", "batch", "ms per call", "ms per window", "repeats")


def _tolerance(key: str, head) -> float:
    for name in (key, getattr(head, "variant", "")):
        if name in TOLERANCES:
            return TOLERANCES[name]
    raise ValueError(
        f"head {key!r} (variant {getattr(head, 'variant', '?')!r}) has no parity tolerance; "
        f"name it by one of {sorted(TOLERANCES)}"
    )


def head_parity(reference, heads: dict, x, y, threshold: float) -> pd.DataFrame:
    """One row per exported variant: how far its p(violent) is from the Keras reference on ``x``.

    Args:
        reference: the ``KerasHead`` of the trained model.
        heads: variant name -> exported head (``TFLiteHead``); the name picks the tolerance.
        x: ``(N, T, D)`` windows (N >= 1), e.g. the run's test clips.
        y: their 0/1 labels (for the AUCs; NaN when only one class is present).
        threshold: the run's decision threshold (labels: violent when p >= threshold).

    Returns:
        Columns ``PARITY_COLUMNS``; ``within tolerance`` is ``max |Δp| <= tolerance``.
    """
    where = "head_parity"
    x = check_windows(x, reference.T, reference.D, where)
    y = np.asarray(y).ravel()
    if len(x) == 0 or len(y) != len(x) or not np.isin(y, (0, 1)).all():
        raise ValueError(
            f"{where}: needs N >= 1 windows and N labels in {{0, 1}}, got {len(x)} windows and "
            f"labels {np.unique(y).tolist()[:5]} ({len(y)})"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"{where}: threshold must be a number in [0, 1], got {threshold!r}")
    base = reference.predict(x)
    rows = [
        probability_parity(key, base, head.predict(x), y, threshold, _tolerance(key, head))
        for key, head in heads.items()
    ]
    return pd.DataFrame(rows, columns=list(PARITY_COLUMNS))


def probability_parity(name: str, reference, candidate, y, threshold: float, tolerance: float) -> dict:
    """One parity row: ``candidate`` probabilities against ``reference`` ones on the same clips (labels ``y``).

    Used per exported head, and for an ensemble whose members are exported heads (their combination against
    the Keras members' combination).
    """
    base, p = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    delta = np.abs(p - base)
    base_auc, auc = roc_auc(y, base), roc_auc(y, p)
    max_delta = float(delta.max())
    return {
        "variant": name,
        "max |Δp|": max_delta,
        "mean |Δp|": float(delta.mean()),
        "label agreement": float(np.mean(predict_labels(p, threshold) == predict_labels(base, threshold))),
        "AUC Keras": base_auc,
        "AUC variant": auc,
        "AUC change": auc - base_auc,
        "tolerance": tolerance,
        "within tolerance": bool(max_delta <= tolerance),
    }


def head_latency(heads: dict, batches=(1, 9), repeats: int = 20, warmup: int = 3, seed: int = 0) -> pd.DataFrame:
    """Median wall time of ``predict`` per call and per window, for each head at each batch size.

    Args:
        heads: name -> head (``KerasHead`` and/or ``TFLiteHead``), each timed on seeded random
            windows of its own ``(T, D)``.
        batches: window counts per call (each >= 1).
        repeats: timed calls per (head, batch); the median is reported.
        warmup: untimed calls first (tracing, interpreter resize).

    Returns:
        Columns ``LATENCY_COLUMNS``: one row per (head, batch).
    """
    batches = list(batches)
    if not batches or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in batches):
        raise ValueError(f"head_latency: batches must be integers >= 1, got {batches!r}")
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"head_latency: {name} must be an integer >= {low}, got {value!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for key, head in heads.items():
        for batch in batches:
            x = rng.standard_normal((int(batch), head.T, head.D)).astype(np.float32)
            for _ in range(warmup):
                head.predict(x)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                head.predict(x)
                times.append(time.perf_counter() - start)
            ms = 1000.0 * float(np.median(times))
            rows.append(
                {
                    "variant": key,
                    "batch": int(batch),
                    "ms per call": ms,
                    "ms per window": ms / batch,
                    "repeats": repeats,
                }
            )
    return pd.DataFrame(rows, columns=list(LATENCY_COLUMNS))


def probe_windows(model, T: int, D: int, n: int = 9, seed: int = 0) -> np.ndarray:
    """A seeded ``(n, T, D)`` float32 batch: standard normal, shifted and scaled like the training features
    when the model standardises its raw input (its adapted mean and variance), so p(violent) is not saturated."""
    x = np.random.default_rng(seed).standard_normal((n, T, D))
    try:
        layer = model.get_layer(INPUT_NORMALIZATION_NAME)
        if layer.input is model.inputs[0]:
            mean, var = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (layer.mean, layer.variance))
            x = mean + np.sqrt(np.maximum(var, 0.0)) * x
    except (ValueError, AttributeError, TypeError):  # no such layer, or not adapted: the plain probe
        pass
    return x.astype(np.float32)
