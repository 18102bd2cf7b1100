"""Stage 3: train a sequence classifier on cached clip features.

``train_sequence_model`` is the one call the training notebook makes: it
checks the data, grows the training set with class-balanced feature-space
augmentation, builds a registered model, trains it with focal loss, a warm-up +
cosine learning rate and gradient clipping, watches per-class validation
accuracy every epoch, stops early on a validation metric (best weights
restored) and writes ``model.keras``, ``history.csv`` and
``training_results.json``.

A model whose registry entry has a closed-form fit (``pooled_linear``: ``models.model_fit_kind``)
takes the other branch, with the same checks, artifacts and result keys: its entry's function
solves for the weights once per candidate (e.g. per C) on the un-augmented training clips, the
validation split chooses the candidate by ``early_stopping_monitor``, and ``history.csv`` holds one
row per candidate instead of one per epoch.

Its parts live beside it in ``nexara_lib.training``: the steps of a run (``run_steps``), the
loss (``losses``), the learning rate and optimizer (``schedule``), the per-epoch monitor and
clock (``monitor``), resumable checkpoints (``checkpoints``), model files (``model_files``), what
``training_results.json`` holds (``results``) and the history plot (``figures``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from nexara_lib.config import SCHEMA, coerce, stage_keys
from nexara_lib.io import write_text_atomic
from nexara_lib.training.arrays import check_splits, predict_class_probabilities
from nexara_lib.training.checkpoints import (
    ResumableCheckpoint,
    load_checkpoint,
    remove_checkpoint,
    training_fingerprint,
)
from nexara_lib.training.model_files import save_model_atomic
from nexara_lib.training.models import ModelEntry, available_models, model_entry
from nexara_lib.training.monitor import MONITORABLE, check_gap_thresholds, per_class_metrics
from nexara_lib.training.pooled import check_c_grid
from nexara_lib.training.results import Fit, data_summary, fit_outcome, keras_outcome, results_json, timing_summary
from nexara_lib.training.run_steps import (
    build_and_compile,
    build_model,
    fit_or_restore,
    make_callbacks,
    prepare_training_set,
    start_session,
)

logger = logging.getLogger("nexara.training")

# every training-stage key of the parameter schema, plus the run seed
TRAINING_KEYS = stage_keys("training") + ("seed",)
# training keys that do not change what is learned: left out of the checkpoint fingerprint
NOT_FINGERPRINTED = ("tensorboard", "checkpoint_interval_s")


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


# --- configuration ------------------------------------------------------------------------


def resolve_training_config(config: Mapping[str, Any]) -> dict:
    """Pick and check the training keys from a run parameter mapping.

    Args:
        config: any mapping (e.g. the resolved run ``Params``); keys of other
            stages are ignored, missing training keys take their schema default.

    Returns:
        A dict with every key of ``TRAINING_KEYS``, checked against the schema (type and
        range) and against each other and the model registry.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"training config must be a mapping of parameter names to values, got {type(config).__name__}")
    resolved = {}
    for key in TRAINING_KEYS:
        value = config[key] if key in config else SCHEMA[key].default
        if isinstance(value, tuple):
            value = list(value)
        resolved[key] = coerce(key, value, "training config")

    def need(ok, key, rule):
        if not ok:
            raise ValueError(f"training parameter {key!r} = {resolved[key]!r}: {rule}")

    need(resolved["model"] in available_models(), "model", f"must be one of {available_models()}")
    need(resolved["warmup_epochs"] <= resolved["epochs"], "warmup_epochs", "must be in [0, epochs]")
    need(
        resolved["early_stopping_monitor"] in MONITORABLE,
        "early_stopping_monitor",
        f"must be one of {list(MONITORABLE)}",
    )
    check_gap_thresholds(resolved["gap_warning"], resolved["gap_critical"])
    check_c_grid(resolved["pooled_c_grid"])
    return resolved


# --- writing and reporting --------------------------------------------------------------


def _write_history(
    history: pd.DataFrame, out_dir: Path, cfg: Mapping[str, Any], checkpoint: ResumableCheckpoint
) -> Path:
    """Write ``history.csv``, then raise ``TrainingDivergedError`` if any epoch's loss is NaN/inf."""
    history_path = out_dir / "history.csv"
    write_text_atomic(history_path, history.to_csv(index=False))
    bad = ~np.isfinite(history["loss"].to_numpy(dtype=float))
    if bad.any():
        epoch = int(history["epoch"].iloc[int(np.argmax(bad))])
        kept = (
            f"the last good checkpoint (epoch {checkpoint.last_good_epoch}) is kept in {checkpoint.directory}"
            if checkpoint.last_good_epoch
            else "no epoch finished cleanly, so there is no checkpoint"
        )
        raise TrainingDivergedError(
            f"training loss became NaN/inf in epoch {epoch} (model {cfg['model']!r}); training stopped and {kept}. "
            f"Lower learning_rate (now {cfg['learning_rate']}), keep gradient_clip_norm > 0 (now "
            f"{cfg['gradient_clip_norm']}) and check the features; partial history in {history_path}"
        )
    return history_path


# --- training ---------------------------------------------------------------------------------


def train_sequence_model(
    x_train,
    y_train,
    x_val,
    y_val,
    config: Mapping[str, Any],
    out_dir,
    seed: int | None = None,
    verbose: int = 1,
    resume: bool = True,
    devices=None,
) -> dict:
    """Train one sequence model and write its artifacts.

    Args:
        x_train: training features (N, T, D).
        y_train: training labels in {0, 1}.
        x_val: validation features (M, T, D).
        y_val: validation labels in {0, 1}.
        config: mapping with the training keys of ``params.SCHEMA`` (other keys
            are ignored; missing ones take the schema default).
        out_dir: folder for ``model.keras``, ``history.csv``, ``training_results.json``,
            ``tensorboard/`` and, while training, ``checkpoint/``.
        seed: overrides ``config['seed']`` when given.
        verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 a line per
            epoch); > 0 also prints the per-class line of every epoch.
        resume: continue from ``out_dir/checkpoint`` when it holds an interrupted run with the
            same parameters and data (otherwise it is discarded and training starts over). A
            closed-form fit (``pooled_linear``) takes seconds and always runs from the start.
        devices: mirror training over these devices (tests use logical CPUs); default: the
            ``multi_gpu`` parameter decides.

    Returns:
        The contents of ``training_results.json`` plus ``"model"`` (the trained
        model, best weights) and ``"history"`` (the per-epoch DataFrame; for a closed-form fit
        one row per candidate, ``stop_reason`` 'closed_form' and the candidates' scores under
        ``"closed_form"``, which is None for the Keras loop).

    Raises:
        TrainingDivergedError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    cfg = resolve_training_config(config)
    if seed is not None:
        seed = int(seed) if isinstance(seed, np.integer) else seed
        cfg["seed"] = coerce("seed", seed, "train_sequence_model(seed=...)")
    x_train, y_train, x_val, y_val = check_splits(x_train, y_train, x_val, y_val)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entry = model_entry(cfg["model"])
    if entry.closed_form is None:
        fit = _fit_keras(x_train, y_train, x_val, y_val, cfg, out_dir, resume, verbose, devices)
    else:
        fit = _fit_closed_form(entry, x_train, y_train, x_val, y_val, cfg, out_dir, verbose, devices)
    final_val = per_class_metrics(y_val, predict_proba(fit.model, x_val))  # the kept (best) weights

    t0 = time.perf_counter()
    save_model_atomic(fit.model, out_dir / "model.keras")
    fit.seconds["save"] = time.perf_counter() - t0
    results = results_json(
        cfg,
        fit,
        final_val,
        data_summary(x_train, y_train, fit.training_set, y_val),
        timing_summary(fit.seconds, started, fit.history, fit.checkpoint),
        started_at,
        out_dir,
    )
    write_text_atomic(out_dir / "training_results.json", json.dumps(results, indent=2))
    remove_checkpoint(out_dir / "checkpoint")  # the run is complete: model.keras is the artifact now
    return {**results, "model": fit.model, "history": fit.history}


def _fit_keras(x_train, y_train, x_val, y_val, cfg: dict, out_dir: Path, resume: bool, verbose: int, devices) -> Fit:
    """The Keras loop: augmentation, focal loss, early stopping on validation, resumable checkpoints."""
    checkpoint_dir = out_dir / "checkpoint"
    fingerprint = training_fingerprint(
        {k: v for k, v in cfg.items() if k not in NOT_FINGERPRINTED}, [x_train, y_train, x_val, y_val]
    )
    previous = load_checkpoint(checkpoint_dir, fingerprint) if resume else None
    if not resume:
        remove_checkpoint(checkpoint_dir)

    session = start_session(cfg, devices)
    training_set = prepare_training_set(x_train, y_train, cfg)
    seconds = {"augment": training_set.seconds}
    t0 = time.perf_counter()
    model = build_and_compile(cfg, x_train, training_set, session, previous)
    seconds["build"] = time.perf_counter() - t0
    initial_epoch = previous.epochs_done if previous else 0
    if previous is not None:
        logger.info("resuming %s from the checkpoint of epoch %d", out_dir, initial_epoch)
        if verbose:
            print(f"resuming from the checkpoint of epoch {initial_epoch} in {checkpoint_dir}", flush=True)
    callbacks = make_callbacks(cfg, x_val, y_val, out_dir, fingerprint, previous, verbose)

    t0 = time.perf_counter()
    history = fit_or_restore(model, cfg, training_set, session, callbacks, previous, verbose)
    seconds["fit"] = time.perf_counter() - t0
    _write_history(history, out_dir, cfg, callbacks.checkpoint)  # raises if the loss diverged
    callbacks.checkpoint.mark_done()
    outcome = keras_outcome(cfg, history, callbacks, initial_epoch)
    return Fit(model, history, outcome, session, training_set, seconds, checkpoint=callbacks.checkpoint)


def _fit_closed_form(
    entry: ModelEntry, x_train, y_train, x_val, y_val, cfg: dict, out_dir: Path, verbose: int, devices
) -> Fit:
    """The entry's closed-form fit on the un-augmented training clips, the candidate chosen on validation.

    Class weighting follows the recipe (``focal_alpha``, ``class_weights``) computed on those clips;
    there are no epochs, so nothing to checkpoint or resume (a stale checkpoint is removed).
    """
    remove_checkpoint(out_dir / "checkpoint")
    session = start_session(cfg, devices)
    training_set = prepare_training_set(x_train, y_train, {**cfg, "augment_factor": 1})  # the clips themselves
    seconds = {"augment": training_set.seconds}
    t0 = time.perf_counter()
    with session.strategy.scope():
        model = build_model(cfg, x_train)
    seconds["build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    solve = entry.closed_form
    if solve is None:  # train_sequence_model sends only closed-form entries here
        raise ValueError(f"model {cfg['model']!r} has no closed-form fit; it trains in the Keras loop")
    solved = solve(model, x_train, y_train, x_val, y_val, cfg, training_set.alpha, training_set.class_weight)
    seconds["fit"] = time.perf_counter() - t0
    write_text_atomic(out_dir / "history.csv", solved.history.to_csv(index=False))
    outcome = fit_outcome(cfg, solved.history, solved.best_index, "closed_form", False, 0)
    monitor = cfg["early_stopping_monitor"]
    chosen = solved.history.iloc[solved.best_index]
    message = (
        f"{cfg['model']}: closed-form fit, {len(solved.history)} candidates; chosen on validation "
        f"{monitor} = {chosen[monitor]:.4f} (candidate {solved.best_index + 1}"
        + (f", C = {chosen['C']:g})" if "C" in chosen else ")")
    )
    logger.info(message)
    if verbose:
        print(message, flush=True)
    return Fit(model, solved.history, outcome, session, training_set, seconds, closed_form=solved.details)


def predict_proba(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """Probability of the violent class for each clip.

    Args:
        model: a model from ``create_sequence_model`` (output (N, 2) softmax).
        x: features (N, T, D).
        batch_size: clips per forward pass.

    Returns:
        float32 array (N,).
    """
    return predict_class_probabilities(model, x, batch_size)[:, 1]
