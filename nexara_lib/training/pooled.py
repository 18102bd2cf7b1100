"""Pooled baselines: a clip's frame features summarised over time, then a linear or one-hidden-layer classifier.

On small surveillance sets an L2 logistic regression on pooled clip statistics can beat the sequence
models (issue #12), so it is a first-class model: built by ``create_sequence_model``, trained by
``train_sequence_model``, saved as ``.keras`` and reloaded, scored, ensembled and TTA-ed like the others.

Both models are ``(T, D)`` features -> ``TemporalPooling`` (per dimension: mean, standard deviation and
mean |x[t+1] - x[t]| over time, ``(3D,)``) -> standardisation (the ``INPUT_NORMALIZATION_NAME`` layer,
adapted to the pooled TRAINING clips) -> the 2-way softmax ``OUTPUT_LAYER_NAME``:

- ``pooled_linear``: the softmax directly on the standardised statistics. Its fit is closed-form
  (``fit_pooled_linear``): scikit-learn's L2 ``LogisticRegression`` (lbfgs) for every C of
  ``pooled_c_grid``, C chosen on the validation split given to ``train_sequence_model`` (in the
  recipe study the inner validation carved from the training folds), the chosen coefficients
  written into the softmax (logits ``[0, w.z + b]``, the same probability as sklearn's sigmoid).
- ``pooled_mlp``: one hidden ReLU layer (``pooled_hidden_units``, dropout, L2) before the softmax,
  trained by the normal Keras loop (focal loss, augmentation, early stopping on validation).

Neither has a ``TemporalAttention`` layer: ``attention_model`` raises ``ValueError`` for them, so the
diagnostics gallery shows uniform frame weights. ``models`` registers both factories;
``TemporalPooling`` is a registered serializable class (package ``nexara``), so the saved models
reload in Keras safe mode (``model_files.load_sequence_model``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import layers, ops
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from nexara_lib.training.arrays import predict_arrays
from nexara_lib.training.layers import (
    INPUT_NORMALIZATION_NAME,
    OUTPUT_LAYER_NAME,
    check_l2,
    check_rate,
    check_units,
    regularizer,
)
from nexara_lib.training.monitor import monitor_mode, per_class_metrics

logger = logging.getLogger("nexara.training")

POOLED_STATISTICS = ("mean", "std", "mean_abs_diff")  # the order of the (3D,) pooled vector
LOGISTIC_MAX_ITER = 5000  # lbfgs iterations per C; a C that does not converge is recorded as such


# --- the pooling layer --------------------------------------------------------------


@keras.saving.register_keras_serializable(package="nexara")
class TemporalPooling(layers.Layer):
    """``(N, T, D) -> (N, 3D)``: per dimension the mean, the standard deviation (population, ddof 0)
    and the mean absolute frame-to-frame difference over time, concatenated in that order.

    No weights; needs ``T >= 2`` (the difference). Models build it in float32, so pooled values do
    not depend on the precision policy.
    """

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"TemporalPooling expects (N, T, D) inputs, got shape {tuple(input_shape)}")
        if input_shape[1] is not None and input_shape[1] < 2:
            raise ValueError(
                f"TemporalPooling needs at least 2 time steps (it pools |x[t+1] - x[t]|), got T = {input_shape[1]}"
            )

    def call(self, inputs):
        mean = ops.mean(inputs, axis=1)
        std = ops.sqrt(ops.mean(ops.square(inputs - ops.expand_dims(mean, 1)), axis=1))
        motion = ops.mean(ops.abs(inputs[:, 1:] - inputs[:, :-1]), axis=1)
        return ops.concatenate([mean, std, motion], axis=-1)

    def compute_output_shape(self, input_shape):
        dim = input_shape[-1]
        return (input_shape[0], None if dim is None else len(POOLED_STATISTICS) * dim)


# --- the models (registered in nexara_lib.training.models) -------------------------------


def _pooled_inputs(input_shape):
    """The feature input, its temporal statistics and their standardisation (float32 throughout)."""
    if input_shape[0] < 2:
        raise ValueError(
            f"pooled models need clips of at least 2 frames (they pool |x[t+1] - x[t]|), "
            f"got input_shape {tuple(input_shape)}"
        )
    inputs = keras.Input(shape=input_shape, name="features")
    pooled = TemporalPooling(name="temporal_pooling", dtype="float32")(inputs)
    # the statistics are standardised, not the raw frames: per dimension the three are shift/scale
    # equivariant, so standardising the frames first would change nothing after this layer
    return inputs, layers.Normalization(axis=-1, name=INPUT_NORMALIZATION_NAME, dtype="float32")(pooled)


def pooled_linear(input_shape) -> keras.Model:
    """Pooled statistics -> standardisation -> 2-way softmax: L2 logistic regression, fit in closed form.

    The L2 strength is not a layer setting: ``fit_pooled_linear`` chooses C from ``pooled_c_grid`` on
    validation and writes the solution into the softmax.
    """
    inputs, x = _pooled_inputs(input_shape)
    outputs = layers.Dense(2, activation="softmax", dtype="float32", name=OUTPUT_LAYER_NAME)(x)
    return keras.Model(inputs, outputs, name="pooled_linear")


def pooled_mlp(
    input_shape,
    *,
    pooled_hidden_units: int,  # width of the hidden ReLU layer
    dropout: float,  # after the hidden layer
    l2: float,  # L2 on both kernels
) -> keras.Model:
    """Pooled statistics -> standardisation -> Dense(relu) -> Dropout -> 2-way softmax, trained by Keras."""
    units = check_units("pooled_hidden_units", pooled_hidden_units)
    dropout, l2 = check_rate("dropout", dropout), check_l2(l2)
    inputs, x = _pooled_inputs(input_shape)
    x = layers.Dense(units, activation="relu", kernel_regularizer=regularizer(l2), name="hidden")(x)
    x = layers.Dropout(dropout, name="hidden_dropout")(x)
    outputs = layers.Dense(
        2, activation="softmax", dtype="float32", kernel_regularizer=regularizer(l2), name=OUTPUT_LAYER_NAME
    )(x)
    return keras.Model(inputs, outputs, name="pooled_mlp")


# --- the closed-form fit of pooled_linear -----------------------------------------------------


@dataclasses.dataclass
class ClosedFormFit:
    """What a closed-form fit reports: one history row per candidate, the chosen one, the details."""

    history: pd.DataFrame  # epoch (candidate number), C, loss, accuracy, val_loss, val_accuracy, val_*, epoch_seconds
    best_index: int  # the chosen row; its solution is in the model
    details: dict  # JSON-ready: grid, chosen C, selection metric, class weights, per-C scores


def recipe_class_weights(y, alpha: float, class_weight: Mapping | None) -> dict:
    """Per-class sample weights of the logistic regression, as the training recipe weighs classes.

    The focal loss weighs class 1 by ``alpha`` and class 0 by ``1 - alpha`` (``focal_alpha``; 'auto' is
    the non-violent fraction), times inverse class frequency when ``class_weights`` is on. The same
    product, rescaled so the mean weight over the training clips is 1 (C keeps sklearn's meaning):
    with 'auto' and no class weights this is exactly sklearn's ``class_weight='balanced'``.
    """
    y = np.asarray(y).ravel()
    raw = {c: (alpha if c == 1 else 1.0 - alpha) * (float(class_weight[c]) if class_weight else 1.0) for c in (0, 1)}
    mean = sum(raw[c] * np.sum(y == c) for c in (0, 1)) / len(y)
    if not mean > 0:
        raise ValueError(f"class weights {raw} give the training clips no weight; check focal_alpha and the labels")
    return {c: float(raw[c] / mean) for c in (0, 1)}


def _weighted_log_loss(y, prob, weights: Mapping) -> float:
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-15, 1 - 1e-15)
    w = np.where(y == 1, weights[1], weights[0])
    return float(-np.sum(w * (y * np.log(p) + (1 - y) * np.log1p(-p))) / np.sum(w))


def check_c_grid(grid) -> list[float]:
    """The candidate Cs, ascending and without repeats: a non-empty list of finite numbers > 0."""
    values = list(grid) if isinstance(grid, (list, tuple, np.ndarray)) else None
    if not values or any(
        isinstance(c, bool) or not isinstance(c, (int, float, np.floating)) or not np.isfinite(c) or c <= 0
        for c in values
    ):
        raise ValueError(f"pooled_c_grid must be a non-empty list of numbers > 0 (inverse L2 strengths), got {grid!r}")
    return sorted({float(c) for c in values})


def standardised_features(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """What the softmax of a pooled model sees: pooled, standardised features ``(N, 3D)`` (float32)."""
    head_input = keras.Model(model.inputs, model.get_layer(INPUT_NORMALIZATION_NAME).output)
    return np.asarray(predict_arrays(head_input, x, batch_size))


def fit_pooled_linear(
    model: keras.Model,
    x_train,
    y_train,
    x_val,
    y_val,
    cfg: Mapping[str, Any],
    alpha: float,
    class_weight: Mapping | None,
) -> ClosedFormFit:
    """Exact L2 logistic regression for every C of ``cfg['pooled_c_grid']``; the validation split picks C.

    Args:
        model: a ``pooled_linear`` model whose standardisation is already adapted to ``x_train``.
        x_train, y_train: the training clips the regression is fit on (not augmented).
        x_val, y_val: the validation clips that choose C (never the test split).
        cfg: the resolved training config: ``pooled_c_grid``, ``early_stopping_monitor`` (the
            selection metric, its direction from ``monitor_mode``; ties go to the smaller C).
        alpha, class_weight: the recipe's class weighting (``recipe_class_weights``).

    Returns:
        A ``ClosedFormFit``; the chosen solution is written into the model's softmax, so the model
        reproduces sklearn's ``predict_proba`` up to float32 rounding.
    """
    grid = check_c_grid(cfg["pooled_c_grid"])
    monitor = cfg["early_stopping_monitor"]
    mode = monitor_mode(monitor)
    y_train, y_val = np.asarray(y_train).ravel(), np.asarray(y_val).ravel()
    # exactly what the saved model's softmax sees (float32 pooling and standardisation), in float64
    z_train = standardised_features(model, x_train).astype(np.float64)
    z_val = standardised_features(model, x_val).astype(np.float64)
    weights = recipe_class_weights(y_train, alpha, class_weight)
    rows, fits, scores = [], [], []
    for number, c in enumerate(grid, start=1):
        started = time.perf_counter()
        clf = LogisticRegression(C=c, solver="lbfgs", max_iter=LOGISTIC_MAX_ITER, class_weight=weights)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(z_train, y_train)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:  # recorded only to count non-convergence: anything else goes out as usual
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        p_train, p_val = clf.predict_proba(z_train)[:, 1], clf.predict_proba(z_val)[:, 1]
        val = {f"val_{k}": v for k, v in per_class_metrics(y_val, p_val).items()}
        rows.append(
            {
                "epoch": number,
                "C": c,
                "loss": _weighted_log_loss(y_train, p_train, weights),
                "accuracy": float(np.mean((p_train >= 0.5) == y_train)),
                "val_loss": _weighted_log_loss(y_val, p_val, weights),
                "val_accuracy": float(np.mean((p_val >= 0.5) == y_val)),
                **val,
                "epoch_seconds": time.perf_counter() - started,
            }
        )
        fits.append(clf)
        scores.append(
            {
                "C": c,
                "val_loss": rows[-1]["val_loss"],
                "val_balanced_accuracy": val["val_balanced_accuracy"],
                "val_auc": val["val_auc"],
                "converged": converged,
                "iterations": int(np.max(clf.n_iter_)),
            }
        )
    history = pd.DataFrame(rows)
    values = history[monitor].to_numpy(dtype=float)
    if not np.isfinite(values).any():
        raise ValueError(
            f"the selection metric {monitor!r} is undefined for every C of {grid}; choose another "
            "early_stopping_monitor (e.g. val_loss)"
        )
    values = np.where(np.isfinite(values), values, np.inf if mode == "min" else -np.inf)
    best = int(np.argmin(values) if mode == "min" else np.argmax(values))  # first = smallest C on ties
    _write_solution(model, fits[best])
    if not scores[best]["converged"]:
        logger.warning(
            "pooled_linear: lbfgs did not converge in %d iterations for the chosen C = %g",
            LOGISTIC_MAX_ITER,
            grid[best],
        )
    details = {
        "method": "L2 logistic regression (scikit-learn, lbfgs) on pooled, standardised features",
        "pooled_statistics": list(POOLED_STATISTICS),
        "c_grid": grid,
        "chosen_c": grid[best],
        "selection_metric": monitor,
        "selection_mode": mode,
        "class_weight": weights,
        "max_iter": LOGISTIC_MAX_ITER,
        "scores": scores,
    }
    return ClosedFormFit(history, best, details)


def _write_solution(model: keras.Model, clf: LogisticRegression) -> None:
    """Logits ``[0, w.z + b]``: softmax gives ``sigmoid(w.z + b)``, sklearn's probability of class 1."""
    output = model.get_layer(OUTPUT_LAYER_NAME)
    kernel, bias = (np.zeros_like(v) for v in output.get_weights())
    if kernel.shape != (clf.coef_.shape[1], 2):
        raise ValueError(
            f"model {model.name!r}: the softmax kernel {kernel.shape} does not match "
            f"{clf.coef_.shape[1]} pooled features; is it a pooled_linear model?"
        )
    kernel[:, 1] = clf.coef_[0]
    bias[1] = clf.intercept_[0]
    output.set_weights([kernel, bias])
