"""What ``training_results.json`` holds (``results_json``): the model and every hyper-parameter it was
built with, how the fit went (best epoch or candidate, the metrics there, why it stopped), the data, the
timings and the library versions; for both ways of fitting in ``train.train_sequence_model`` (the Keras
loop and a closed-form fit).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from nexara_lib.io import to_jsonable
from nexara_lib.training.arrays import class_counts
from nexara_lib.training.checkpoints import ResumableCheckpoint
from nexara_lib.training.models import (
    available_models,
    model_defaults,
    model_entry,
    model_param_names,
    model_params_from_config,
)
from nexara_lib.training.monitor import gap_status, monitor_mode
from nexara_lib.training.run_steps import RunCallbacks, Session, TrainingSet

# training keys only one way of fitting reads (the other ignores them)
FIT_ONLY_KEYS = {
    "keras": (
        "focal_gamma",
        "label_smoothing",
        "optimizer",
        "learning_rate",
        "warmup_epochs",
        "gradient_clip_norm",
        "batch_size",
        "epochs",
        "early_stopping_patience",
        "augment_factor",
        "augment_ops",
        "gap_stop_patience",
        "checkpoint_interval_s",
        "tensorboard",
    ),
    "closed_form": ("pooled_c_grid",),
}
# history columns that are not validation or training metrics
NOT_METRICS = ("epoch", "epoch_seconds", "learning_rate", "C")


@dataclasses.dataclass
class Fit:
    """A fitted model, by the Keras loop or in closed form, and what the results need of the fit."""

    model: keras.Model
    history: pd.DataFrame
    outcome: dict
    session: Session
    training_set: TrainingSet
    seconds: dict  # augment, build, fit
    checkpoint: ResumableCheckpoint | None = None  # the Keras loop's
    closed_form: dict | None = None  # the closed-form fit's candidates, scores and choice


def model_summary(cfg: Mapping[str, Any]) -> dict:
    """The model, how it is fit, every hyper-parameter it was built with, and the keys it ignored."""
    name = cfg["model"]
    fit = model_entry(name).fit
    accepted = model_param_names(name)
    model_shape_keys = {k for m in available_models() for k in model_param_names(m)}
    return {
        "model": name,
        "fit": fit,
        "model_params": {**model_defaults(name), **model_params_from_config(cfg)},
        "training_keys_unused_by_model": sorted(k for k in model_shape_keys & set(cfg) if k not in accepted),
        "training_keys_unused_by_fit": sorted(k for kind, keys in FIT_ONLY_KEYS.items() if kind != fit for k in keys),
    }


def fit_outcome(
    cfg: Mapping[str, Any],
    history: pd.DataFrame,
    best_index: int,
    stop_reason: str,
    stopped_early: bool,
    initial_epoch: int,
) -> dict:
    """How the fit went: the monitored metric, the best row (epoch or candidate) and its metrics, why it stopped."""
    monitor = cfg["early_stopping_monitor"]
    best_row = history.iloc[best_index]
    metric_columns = [c for c in history.columns if c not in NOT_METRICS]
    return {
        "monitor": monitor,
        "monitor_mode": monitor_mode(monitor),
        "best_epoch": best_index + 1,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "stop_reason": stop_reason,
        "resumed_from_epoch": initial_epoch,
        "best_metrics": {c: float(best_row[c]) for c in metric_columns},
        "best_gap_status": gap_status(float(best_row["val_class_gap"]), cfg["gap_warning"], cfg["gap_critical"]),
    }


def keras_outcome(cfg: Mapping[str, Any], history: pd.DataFrame, callbacks: RunCallbacks, initial_epoch: int) -> dict:
    """The Keras loop's outcome: early stopping's best epoch, and which rule ended the run."""
    best_index = (
        int(callbacks.early_stopping.best_epoch)
        if np.isfinite(history[cfg["early_stopping_monitor"]]).any()
        else len(history) - 1
    )
    if callbacks.per_class.stopped_epoch is not None:
        stop_reason = "critical_class_gap"
    elif len(history) < cfg["epochs"]:
        stop_reason = "early_stopping"
    else:
        stop_reason = "max_epochs"
    return fit_outcome(cfg, history, best_index, stop_reason, len(history) < cfg["epochs"], initial_epoch)


def data_summary(x_train: np.ndarray, y_train: np.ndarray, training_set: TrainingSet, y_val: np.ndarray) -> dict:
    """Clip shape, split sizes and class counts, before and after augmentation."""
    return {
        "timesteps": int(x_train.shape[1]),
        "feature_dim": int(x_train.shape[2]),
        "train_size": int(len(y_train)),
        "train_size_augmented": int(len(training_set.y)),
        "val_size": int(len(y_val)),
        "train_class_counts": class_counts(y_train),
        "train_class_counts_augmented": class_counts(training_set.y),
        "val_class_counts": class_counts(y_val),
    }


def timing_summary(
    seconds: Mapping[str, float], started: float, history: pd.DataFrame, checkpoint: ResumableCheckpoint | None
) -> dict:
    """Seconds per step (``seconds``: augment, build, fit, save), in total and per epoch (per candidate of a
    closed-form fit)."""
    epoch_seconds = history["epoch_seconds"].to_numpy(dtype=float)
    # the first epoch includes graph tracing; steady-state speed excludes it when there is more than one
    steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    return {
        **{f"{step}_seconds": seconds[step] for step in ("augment", "build", "fit", "save")},
        "total_seconds": time.perf_counter() - started,
        "seconds_per_epoch": float(np.mean(steady)),
        "first_epoch_seconds": float(epoch_seconds[0]),
        "checkpoint_seconds": checkpoint.seconds_spent if checkpoint else 0.0,
        "checkpoint_commits": checkpoint.commits if checkpoint else 0,
    }


def results_json(
    cfg: Mapping[str, Any], fit: Fit, final_val: dict, data: dict, timings: dict, started_at: str, out_dir: Path
) -> dict:
    """The contents of ``training_results.json`` (JSON-ready)."""
    session, training_set = fit.session, fit.training_set
    tensorboard = cfg["tensorboard"] and fit.checkpoint is not None  # the Keras loop writes the logs
    return to_jsonable(
        {
            **model_summary(cfg),
            "training_params": cfg,
            "seed": cfg["seed"],
            "precision_policy": session.policy,
            "distribution": {
                "strategy": type(session.strategy).__name__,
                "replicas": session.replicas,
                "batch_size_per_replica": cfg["batch_size"],
                "global_batch_size": session.global_batch,
            },
            "focal_alpha_used": training_set.alpha,
            "class_weight_used": training_set.class_weight,
            "n_parameters": int(fit.model.count_params()),
            **fit.outcome,
            "closed_form": fit.closed_form,
            "final_val_metrics": final_val,
            "data": data,
            "timings": timings,
            "versions": {"keras": keras.__version__, "numpy": np.__version__, "tensorflow": tf_version()},
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "artifacts": {
                "model": str(out_dir / "model.keras"),
                "history": str(out_dir / "history.csv"),
                "results": str(out_dir / "training_results.json"),
                "tensorboard": str(out_dir / "tensorboard") if tensorboard else None,
            },
        }
    )


def tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
