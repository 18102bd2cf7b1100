"""Stage 3: train a sequence classifier on cached clip features.

``train_sequence_model`` is the one call the training notebook makes: it
checks the data, grows the training set with class-balanced feature-space
augmentation, builds a registered model, trains it with focal loss, a warm-up +
cosine learning rate and gradient clipping, watches per-class validation
accuracy every epoch, stops early on a validation metric (best weights
restored) and writes ``model.keras``, ``history.csv`` and
``training_results.json``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import pandas as pd
from keras import ops
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from nexara_lib.training.augment import augment_training_set
from nexara_lib.config import SCHEMA, coerce, stage_keys
from nexara_lib.labels import CLASS_NAMES, per_class_accuracy
from nexara_lib.runtime import configure_precision, distribution_strategy, set_seed
from nexara_lib.training.models import (INPUT_NORMALIZATION_NAME, available_models, create_sequence_model,
                                        model_defaults, model_param_names)
from nexara_lib.io import atomic_path, to_jsonable, write_text_atomic

logger = logging.getLogger("nexara.training")

# every training-stage key of the parameter schema, plus the run seed
TRAINING_KEYS = stage_keys("training") + ("seed",)

# metrics PerClassMonitor adds to the epoch logs (validation set, threshold 0.5)
PER_CLASS_LOG_KEYS = ("val_acc_nonviolent", "val_acc_violent", "val_class_gap", "val_balanced_accuracy", "val_auc")
MONITORABLE = ("val_loss", "val_accuracy") + PER_CLASS_LOG_KEYS



class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


# --- loss and learning rate -----------------------------------------------------------

@keras.saving.register_keras_serializable(package="nexara")
class FocalLoss(keras.losses.Loss):
    """Binary focal loss on 2-way softmax outputs with one-hot targets.

    ``loss = -sum_c alpha_c (1 - p_c)^gamma y_c log p_c`` with
    ``alpha_1 = alpha`` (violent) and ``alpha_0 = 1 - alpha``. With gamma 0 and
    alpha 0.5 it is half the categorical cross-entropy.

    Args:
        gamma: focusing parameter; larger values down-weight easy examples more.
        alpha: weight of class 1 (violent), in (0, 1).
        label_smoothing: mixes the one-hot targets with the uniform distribution.
    """

    def __init__(self, gamma: float = 3.0, alpha: float = 0.5, label_smoothing: float = 0.0,
                 name: str = "focal_loss", reduction: str = "sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
            raise ValueError(f"focal loss gamma must be a number >= 0, got {gamma!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ValueError(f"focal loss alpha (weight of the violent class) must be in (0, 1), got {alpha!r}")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != 2:
            raise ValueError(f"FocalLoss expects 2-way softmax outputs (N, 2), got shape {tuple(y_pred.shape)}")
        # float32 regardless of the policy: log/pow in float16 underflow for confident predictions
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if self.label_smoothing > 0:
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / 2.0
        probs = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        class_weight = ops.convert_to_tensor([1.0 - self.alpha, self.alpha], dtype="float32")
        per_class = class_weight * ops.power(1.0 - probs, self.gamma) * (-y_true * ops.log(probs))
        return ops.sum(per_class, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(gamma=self.gamma, alpha=self.alpha, label_smoothing=self.label_smoothing)
        return config


def alpha_from_labels(y) -> float:
    """Focal-loss weight of the violent class from class frequencies.

    Args:
        y: labels in {0, 1}.

    Returns:
        The fraction of non-violent clips: the rarer class gets the larger weight
        (0.5 for a balanced set).
    """
    y = np.asarray(y).ravel()
    counts = [int(np.sum(y == c)) for c in (0, 1)]
    if y.size == 0 or min(counts) == 0 or sum(counts) != y.size:
        raise ValueError(f"alpha_from_labels needs labels in {{0, 1}} with both classes present; "
                         f"got counts non-violent={counts[0]}, violent={counts[1]} of {y.size} labels")
    return counts[0] / y.size


@keras.saving.register_keras_serializable(package="nexara")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_lr``, then cosine decay to ``min_lr`` at ``total_steps``.

    Args:
        peak_lr: learning rate at the end of the warm-up.
        warmup_steps: optimizer steps of linear warm-up (0 = start at the peak).
        total_steps: step at which the cosine reaches ``min_lr`` (held afterwards).
        min_lr: floor of the decay.
    """

    def __init__(self, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        if not peak_lr > 0:
            raise ValueError(f"WarmupCosine peak_lr must be > 0, got {peak_lr!r}")
        if int(total_steps) < 1 or not 0 <= int(warmup_steps) <= int(total_steps):
            raise ValueError(f"WarmupCosine needs 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                             f"got warmup_steps={warmup_steps!r}, total_steps={total_steps!r}")
        if not 0 <= min_lr <= peak_lr:
            raise ValueError(f"WarmupCosine min_lr must be in [0, peak_lr], got {min_lr!r}")
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        # (step + 1): the first update already uses a non-zero rate; the peak is hit at warmup_steps - 1
        warm = self.peak_lr * (step + 1.0) / max(self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "min_lr": self.min_lr}


# --- per-class monitoring ---------------------------------------------------------------

def per_class_metrics(y_true, prob_violent) -> dict:
    """Per-class accuracy at threshold 0.5, their gap, balanced accuracy and AUC.

    Args:
        y_true: labels in {0, 1}, shape (N,).
        prob_violent: predicted probability of class 1, shape (N,).

    Returns:
        ``{acc_nonviolent, acc_violent, class_gap, balanced_accuracy, auc}`` as floats
        (NaN where undefined, e.g. a missing class or non-finite predictions).
    """
    y_true = np.asarray(y_true).ravel()
    prob = np.asarray(prob_violent, dtype=np.float64).ravel()
    if y_true.shape != prob.shape:
        raise ValueError(f"labels {y_true.shape} and probabilities {prob.shape} must have the same length")
    accs = list(per_class_accuracy(y_true, prob))
    finite = bool(np.all(np.isfinite(prob)))
    if not finite:
        accs = [float("nan"), float("nan")]
    both = np.any(y_true == 0) and np.any(y_true == 1)
    auc = float(roc_auc_score(y_true, prob)) if both and finite else float("nan")
    return {"acc_nonviolent": accs[0], "acc_violent": accs[1], "class_gap": abs(accs[0] - accs[1]),
            "balanced_accuracy": (accs[0] + accs[1]) / 2, "auc": auc}


def gap_status(gap: float, gap_warning: float, gap_critical: float) -> str:
    """'critical' above gap_critical, 'warning' above gap_warning, else 'ok' (NaN -> 'unknown')."""
    if not np.isfinite(gap):
        return "unknown"
    if gap > gap_critical:
        return "critical"
    return "warning" if gap > gap_warning else "ok"


def _check_gap_thresholds(gap_warning, gap_critical) -> None:
    if not 0 <= gap_warning <= gap_critical <= 1:
        raise ValueError(f"gap thresholds must satisfy 0 <= gap_warning <= gap_critical <= 1, "
                         f"got gap_warning={gap_warning!r}, gap_critical={gap_critical!r}")


class PerClassMonitor(keras.callbacks.Callback):
    """Each epoch: validation accuracy per class, their gap, balanced accuracy and AUC.

    The values go into the epoch ``logs`` (keys ``PER_CLASS_LOG_KEYS``) so
    History, EarlyStopping and ModelCheckpoint placed after this callback see
    them. A gap above ``gap_warning`` logs a WARNING, above ``gap_critical`` a
    CRITICAL (logger ``nexara.training``), and a line is printed when verbose.

    Args:
        x_val: validation features (N, T, D).
        y_val: validation labels in {0, 1}.
        gap_warning: gap that triggers a warning.
        gap_critical: gap that triggers a critical message.
        batch_size: prediction batch size.
        verbose: print one line per epoch when > 0.
        stop_patience: stop training after this many consecutive critical epochs (0 = never).
        with_loss: also put ``val_loss`` and ``val_accuracy`` into the logs, so ``fit`` needs no
            ``validation_data`` (and validates once per epoch instead of twice).
    """

    def __init__(self, x_val, y_val, gap_warning: float = 0.15, gap_critical: float = 0.25,
                 batch_size: int = 256, verbose: int = 1, stop_patience: int = 0, with_loss: bool = False):
        super().__init__()
        self.x_val, self.y_val = _check_split(x_val, y_val, "validation")
        _check_gap_thresholds(gap_warning, gap_critical)
        if isinstance(stop_patience, bool) or not isinstance(stop_patience, (int, np.integer)) or stop_patience < 0:
            raise ValueError(f"gap stop patience must be an integer >= 0 (0 = never stop), got {stop_patience!r}")
        self.gap_warning = float(gap_warning)
        self.gap_critical = float(gap_critical)
        self.batch_size = int(batch_size)
        self.verbose = verbose
        self.stop_patience = int(stop_patience)
        self.with_loss = bool(with_loss)
        self.critical_streak = 0  # consecutive epochs with a critical gap
        self.stopped_epoch: int | None = None  # set when the persistent critical gap stopped training
        self.records: list[dict] = []  # one dict per epoch, also handy outside of fit

    def loss_and_accuracy(self, probs: np.ndarray) -> dict:
        """``val_loss`` (the compiled loss plus regularisation, as ``evaluate`` computes it) and
        ``val_accuracy`` from predictions already made: one validation pass per epoch, not two."""
        loss = self.model.loss(_one_hot(self.y_val), probs.astype(np.float32))
        penalty = sum(float(ops.convert_to_numpy(ops.cast(term, "float32"))) for term in self.model.losses)
        return {"val_loss": float(ops.convert_to_numpy(loss)) + penalty,
                "val_accuracy": float(np.mean(np.argmax(probs, axis=1) == self.y_val))}

    def state(self) -> dict:
        """What a resumed run needs to keep counting the critical streak."""
        return {"critical_streak": self.critical_streak, "stopped_epoch": self.stopped_epoch}

    def restore(self, state: Mapping | None) -> None:
        if state:
            self.critical_streak = int(state.get("critical_streak", 0))
            self.stopped_epoch = state.get("stopped_epoch")

    def on_epoch_end(self, epoch, logs=None):
        probs = _predict_probs(self.model, self.x_val, self.batch_size)
        metrics = per_class_metrics(self.y_val, probs[:, 1])
        values = {f"val_{k}": v for k, v in metrics.items()}
        if self.with_loss:
            values = {**self.loss_and_accuracy(probs), **values}
        if logs is not None:
            logs.update(values)
        status = gap_status(metrics["class_gap"], self.gap_warning, self.gap_critical)
        self.records.append({"epoch": epoch + 1, **values, "gap_status": status})
        train = ""
        if logs and "loss" in logs:  # the training side of the epoch, for a one-line view of both
            train = f"train loss {float(logs['loss']):.4f}" + (
                f", accuracy {float(logs['accuracy']):.3f}; " if "accuracy" in logs else "; ")
        message = (f"epoch {epoch + 1}: {train}validation accuracy non-violent {metrics['acc_nonviolent']:.3f}, "
                   f"violent {metrics['acc_violent']:.3f}, gap {metrics['class_gap']:.3f}, "
                   f"balanced {metrics['balanced_accuracy']:.3f}, AUC {metrics['auc']:.3f}")
        if status == "critical":
            message = f"CRITICAL class gap > {self.gap_critical:.2f}: {message}"
            logger.critical(message)
        elif status == "warning":
            message = f"WARNING class gap > {self.gap_warning:.2f}: {message}"
            logger.warning(message)
        else:
            logger.info(message)
        if self.verbose:
            print(message, flush=True)
        self.critical_streak = self.critical_streak + 1 if status == "critical" else 0
        if self.stop_patience and self.critical_streak >= self.stop_patience and self.model is not None:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
            stop = (f"stopping: the class gap has been critical (> {self.gap_critical:.2f}) for "
                    f"{self.critical_streak} epochs in a row (gap_stop_patience = {self.stop_patience})")
            logger.critical(stop)
            if self.verbose:
                print(stop, flush=True)


class _StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training after an epoch whose loss is NaN/inf.

    Checked once per epoch rather than per batch (``TerminateOnNaN``): a batch-level hook makes
    Keras copy the logs to the host after every batch, which stalls the device pipeline.
    """

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class _EpochClock(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` and the current ``learning_rate`` to the epoch logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start
            logs["learning_rate"] = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))


def monitor_mode(monitor: str) -> str:
    """'min' for loss- and gap-like metric names, 'max' for accuracy/AUC-like ones."""
    name = monitor.lower()
    if "loss" in name or "gap" in name:
        return "min"
    if any(part in name for part in ("acc", "auc", "balanced", "precision", "recall", "f1")):
        return "max"
    raise ValueError(f"cannot tell whether {monitor!r} should go up or down; monitor one of {list(MONITORABLE)}")


# --- seeding and configuration -----------------------------------------------------------

def resolve_training_config(config: Mapping[str, Any]) -> dict:
    """Pick and check the training keys from a run parameter mapping.

    Args:
        config: any mapping (e.g. the resolved run ``Params``); keys of other
            stages are ignored, missing training keys take their schema default.

    Returns:
        A dict with every key of ``TRAINING_KEYS``, type-checked against the schema.
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
    need(resolved["epochs"] >= 1, "epochs", "must be >= 1")
    need(resolved["batch_size"] >= 1, "batch_size", "must be >= 1")
    need(0 <= resolved["warmup_epochs"] <= resolved["epochs"], "warmup_epochs", "must be in [0, epochs]")
    need(resolved["learning_rate"] > 0, "learning_rate", "must be > 0")
    need(resolved["gradient_clip_norm"] >= 0, "gradient_clip_norm", "must be >= 0 (0 = no clipping)")
    need(resolved["early_stopping_patience"] >= 0, "early_stopping_patience", "must be >= 0")
    need(resolved["early_stopping_monitor"] in MONITORABLE, "early_stopping_monitor",
         f"must be one of {list(MONITORABLE)}")
    need(resolved["augment_factor"] >= 1, "augment_factor", "must be >= 1 (1 = no augmentation)")
    need(resolved["focal_gamma"] >= 0, "focal_gamma", "must be >= 0")
    need(resolved["focal_alpha"] == "auto" or 0 < resolved["focal_alpha"] < 1, "focal_alpha",
         "must be 'auto' or a number in (0, 1)")
    need(0 <= resolved["label_smoothing"] < 1, "label_smoothing", "must be in [0, 1)")
    need(0 <= resolved["dropout"] < 1, "dropout", "must be in [0, 1)")
    need(0 <= resolved["recurrent_dropout"] < 1, "recurrent_dropout", "must be in [0, 1)")
    need(resolved["seed"] >= 0, "seed", "must be >= 0")
    need(resolved["gap_stop_patience"] >= 0, "gap_stop_patience", "must be >= 0 (0 = never stop on the gap)")
    need(resolved["checkpoint_interval_s"] >= 0, "checkpoint_interval_s", "must be >= 0 (0 = every epoch)")
    _check_gap_thresholds(resolved["gap_warning"], resolved["gap_critical"])
    return resolved


def make_optimizer(name: str, learning_rate, clip_norm: float) -> keras.optimizers.Optimizer:
    """Adam, AdamW or SGD (Nesterov momentum 0.9) with optional global-norm clipping.

    Args:
        name: 'adam', 'adamw' or 'sgd'.
        learning_rate: a float or a LearningRateSchedule.
        clip_norm: global gradient-norm limit; 0 turns clipping off.

    Returns:
        The optimizer.
    """
    kwargs = {"learning_rate": learning_rate}
    if clip_norm > 0:
        kwargs["global_clipnorm"] = clip_norm
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamw":
        return keras.optimizers.AdamW(**kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=0.9, nesterov=True, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam', 'adamw' or 'sgd'")


def _check_split(x, y, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, T, D) finite float32 and labels (N,) in {0, 1} with both classes present."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"{split} features must have shape (N, T, D) with N > 0, got {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{split} labels must have shape ({x.shape[0]},) to match the features, got {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{split} features contain NaN or infinite values; re-extract or drop those clips")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{split} labels must be 0 (non-violent) or 1 (violent), got values {sorted(values)}")
    missing = [CLASS_NAMES[c] for c in (0, 1) if c not in values]
    if missing:
        raise ValueError(f"the {split} split has no {' and no '.join(missing)} clips; both classes are needed "
                         f"in the {split} split (re-split the data or add clips)")
    return x, y.astype(np.int64)


# --- training -------------------------------------------------------------------------------

def _one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(2, dtype=np.float32)[y]


def _counts(y: np.ndarray) -> dict:
    return {CLASS_NAMES[c]: int(np.sum(y == c)) for c in (0, 1)}


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Save a ``.keras`` model atomically (Keras picks the format from the suffix)."""
    with atomic_path(path, keep_suffix=True) as tmp:
        model.save(tmp)


def adapt_input_normalization(model: keras.Model, x_train: np.ndarray) -> None:
    """Set the model's input standardisation to the TRAINING split's per-dimension mean and variance.

    Only the un-augmented training clips are used (never validation or test); the statistics are
    model weights, so the saved ``.keras`` file standardises new data the same way. Computed with
    NumPy rather than ``Normalization.adapt`` (which spins up a tf.data pipeline for a two-line job).
    """
    layer = model.get_layer(INPUT_NORMALIZATION_NAME)
    flat = np.asarray(x_train, dtype=np.float64).reshape(-1, x_train.shape[-1])
    layer.set_weights([flat.mean(axis=0).astype(np.float32), flat.var(axis=0).astype(np.float32),
                       np.asarray(len(flat), dtype=np.float32)])
    layer.finalize_state()  # the layer normalises with mean/variance derived from these weights


NOT_FINGERPRINTED = ("tensorboard", "checkpoint_interval_s")


def train_sequence_model(x_train, y_train, x_val, y_val, config: Mapping[str, Any], out_dir,
                         seed: int | None = None, verbose: int = 1, resume: bool = True,
                         devices=None) -> dict:
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
            same parameters and data (otherwise it is discarded and training starts over).
        devices: mirror training over these devices (tests use logical CPUs); default: the
            ``multi_gpu`` parameter decides.

    Returns:
        The contents of ``training_results.json`` plus ``"model"`` (the trained
        model, best weights) and ``"history"`` (the per-epoch DataFrame).

    Raises:
        TrainingDivergedError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    from nexara_lib.training.checkpoints import (ResumableCheckpoint, ResumableEarlyStopping, load_checkpoint, remove_checkpoint,
                              training_fingerprint)

    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cfg = resolve_training_config(config)
    if seed is not None:
        seed = int(seed) if isinstance(seed, np.integer) else seed
        cfg["seed"] = coerce("seed", seed, "train_sequence_model(seed=...)")
    x_train, y_train = _check_split(x_train, y_train, "training")
    x_val, y_val = _check_split(x_val, y_val, "validation")
    if x_val.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"validation clips have shape (T, D) = {x_val.shape[1:]} but training clips have "
                         f"{x_train.shape[1:]}; use features from the same backbone and frames_per_clip")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    monitor = cfg["early_stopping_monitor"]
    mode = monitor_mode(monitor)
    checkpoint_dir = out_dir / "checkpoint"
    fingerprint = training_fingerprint({k: v for k, v in cfg.items() if k not in NOT_FINGERPRINTED},
                                       [x_train, y_train, x_val, y_val])
    previous = load_checkpoint(checkpoint_dir, fingerprint) if resume else None
    if not resume:
        remove_checkpoint(checkpoint_dir)

    # clear_session first: it also resets the dtype policy and seeds that the next lines set
    keras.backend.clear_session(free_memory=True)
    set_seed(cfg["seed"])
    policy = configure_precision(cfg["mixed_precision"])
    strategy = distribution_strategy(cfg["multi_gpu"], devices)
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = cfg["batch_size"] * replicas  # batch_size is per replica

    t0 = time.perf_counter()
    x_fit, y_fit = augment_training_set(x_train, y_train, cfg["augment_factor"], cfg["augment_ops"],
                                        np.random.default_rng(cfg["seed"]))
    augment_seconds = time.perf_counter() - t0
    # alpha and class weights follow the set the loss actually sees (balanced after augmentation)
    alpha = alpha_from_labels(y_fit) if cfg["focal_alpha"] == "auto" else float(cfg["focal_alpha"])
    class_weight = ({c: len(y_fit) / (2.0 * np.sum(y_fit == c)) for c in (0, 1)}
                    if cfg["class_weights"] else None)

    t0 = time.perf_counter()
    name = cfg["model"]
    accepted = model_param_names(name)
    model_kwargs = {k: cfg[k] for k in accepted if k in cfg}
    steps_per_epoch = math.ceil(len(y_fit) / global_batch)
    with strategy.scope():
        model = create_sequence_model(name, x_train.shape[1:], **model_kwargs)
        adapt_input_normalization(model, x_train)
        schedule = WarmupCosine(cfg["learning_rate"], cfg["warmup_epochs"] * steps_per_epoch,
                                cfg["epochs"] * steps_per_epoch)
        model.compile(optimizer=make_optimizer(cfg["optimizer"], schedule, cfg["gradient_clip_norm"]),
                      loss=FocalLoss(cfg["focal_gamma"], alpha, cfg["label_smoothing"]),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        if previous is not None:
            model.optimizer.build(model.trainable_variables)  # so the optimizer state loads too
            previous.restore_model(model)
    build_seconds = time.perf_counter() - t0
    initial_epoch = previous.epochs_done if previous else 0
    if previous is not None:
        logger.info("resuming %s from the checkpoint of epoch %d", out_dir, initial_epoch)
        if verbose:
            print(f"resuming from the checkpoint of epoch {initial_epoch} in {checkpoint_dir}", flush=True)

    per_class = PerClassMonitor(x_val, y_val, cfg["gap_warning"], cfg["gap_critical"], verbose=verbose,
                                stop_patience=cfg["gap_stop_patience"], with_loss=True)
    per_class.restore(previous.data.get("gap_monitor") if previous else None)
    early_stopping = ResumableEarlyStopping(monitor=monitor, mode=mode, patience=cfg["early_stopping_patience"],
                                            restore_best_weights=True, verbose=min(verbose, 1),
                                            resume_from=previous)
    checkpoint = ResumableCheckpoint(checkpoint_dir, fingerprint, early_stopping, per_class, previous,
                                     interval_s=cfg["checkpoint_interval_s"])
    # order matters: the monitor fills the logs (val_loss included) that early stopping, the checkpoint
    # and History read
    callbacks = [per_class, _StopOnNonFiniteLoss(), early_stopping, _EpochClock(), checkpoint]
    if cfg["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False))

    t0 = time.perf_counter()
    if previous is not None and (previous.training_done or initial_epoch >= cfg["epochs"]):
        best = previous.best_weights()  # fit had finished; only the artifacts were missing
        if best is not None:
            model.set_weights(best)
        new_rows = []
    else:
        # no validation_data: the per-class monitor predicts the validation clips once per epoch and
        # logs val_loss / val_accuracy from those predictions
        fit = model.fit(x_fit, _one_hot(y_fit), batch_size=global_batch, epochs=cfg["epochs"], initial_epoch=initial_epoch, shuffle=True,
                        class_weight=class_weight, callbacks=callbacks, verbose=verbose)
        n_new = len(fit.history.get("loss", []))
        new_rows = [{"epoch": initial_epoch + i + 1, **{k: v[i] for k, v in fit.history.items()}}
                    for i in range(n_new)]
    fit_seconds = time.perf_counter() - t0

    resumed_rows = previous.rows if previous else []
    history = pd.DataFrame(resumed_rows + new_rows)
    history_path = out_dir / "history.csv"
    write_text_atomic(history_path, history.to_csv(index=False))
    bad = ~np.isfinite(history["loss"].to_numpy(dtype=float))
    if bad.any():
        epoch = int(history["epoch"].iloc[int(np.argmax(bad))])
        kept = (f"the last good checkpoint (epoch {checkpoint.last_good_epoch}) is kept in {checkpoint_dir}"
                if checkpoint.last_good_epoch else "no epoch finished cleanly, so there is no checkpoint")
        raise TrainingDivergedError(
            f"training loss became NaN/inf in epoch {epoch} (model {name!r}); training stopped and {kept}. "
            f"Lower learning_rate (now {cfg['learning_rate']}), keep gradient_clip_norm > 0 (now "
            f"{cfg['gradient_clip_norm']}) and check the features; partial history in {history_path}")
    checkpoint.mark_done()

    best_index = int(early_stopping.best_epoch) if np.isfinite(history[monitor]).any() else len(history) - 1
    best_row = history.iloc[best_index]
    final_val = per_class_metrics(y_val, predict_proba(model, x_val))  # the restored (best) weights
    if per_class.stopped_epoch is not None:
        stop_reason = "critical_class_gap"
    elif len(history) < cfg["epochs"]:
        stop_reason = "early_stopping"
    else:
        stop_reason = "max_epochs"

    t0 = time.perf_counter()
    model_path = out_dir / "model.keras"
    save_model_atomic(model, model_path)
    save_seconds = time.perf_counter() - t0

    epoch_seconds = history["epoch_seconds"].to_numpy(dtype=float)
    # the first epoch includes graph tracing; steady-state speed excludes it when there is more than one
    steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    results_path = out_dir / "training_results.json"
    metric_columns = [c for c in history.columns if c not in ("epoch", "epoch_seconds", "learning_rate")]
    model_shape_keys = {k for m in available_models() for k in model_param_names(m)}
    results = {
        "model": name,
        "model_params": {**model_defaults(name), **model_kwargs},
        "training_keys_unused_by_model": sorted(k for k in model_shape_keys & set(cfg) if k not in accepted),
        "training_params": cfg,
        "seed": cfg["seed"],
        "precision_policy": policy,
        "distribution": {"strategy": type(strategy).__name__, "replicas": replicas,
                         "batch_size_per_replica": cfg["batch_size"], "global_batch_size": global_batch},
        "focal_alpha_used": alpha,
        "class_weight_used": class_weight,
        "n_parameters": int(model.count_params()),
        "monitor": monitor,
        "monitor_mode": mode,
        "best_epoch": best_index + 1,
        "epochs_run": len(history),
        "stopped_early": len(history) < cfg["epochs"],
        "stop_reason": stop_reason,
        "resumed_from_epoch": initial_epoch,
        "best_metrics": {c: float(best_row[c]) for c in metric_columns},
        "best_gap_status": gap_status(float(best_row["val_class_gap"]), cfg["gap_warning"], cfg["gap_critical"]),
        "final_val_metrics": final_val,
        "data": {
            "timesteps": int(x_train.shape[1]), "feature_dim": int(x_train.shape[2]),
            "train_size": int(len(y_train)), "train_size_augmented": int(len(y_fit)), "val_size": int(len(y_val)),
            "train_class_counts": _counts(y_train), "train_class_counts_augmented": _counts(y_fit),
            "val_class_counts": _counts(y_val),
        },
        "timings": {
            "augment_seconds": augment_seconds, "build_seconds": build_seconds, "fit_seconds": fit_seconds,
            "save_seconds": save_seconds, "total_seconds": time.perf_counter() - started,
            "seconds_per_epoch": float(np.mean(steady)), "first_epoch_seconds": float(epoch_seconds[0]),
            "checkpoint_seconds": checkpoint.seconds_spent, "checkpoint_commits": checkpoint.commits,
        },
        "versions": {"keras": keras.__version__, "numpy": np.__version__, "tensorflow": _tf_version()},
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "artifacts": {"model": str(model_path), "history": str(history_path), "results": str(results_path),
                      "tensorboard": str(out_dir / "tensorboard") if cfg["tensorboard"] else None},
    }
    results = to_jsonable(results)
    write_text_atomic(results_path, json.dumps(results, indent=2))
    remove_checkpoint(checkpoint_dir)  # the run is complete: model.keras is the artifact now
    return {**results, "model": model, "history": history}


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def predict_proba(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """Probability of the violent class for each clip.

    Args:
        model: a model from ``create_sequence_model`` (output (N, 2) softmax).
        x: features (N, T, D).
        batch_size: clips per forward pass.

    Returns:
        float32 array (N,).
    """
    return _predict_probs(model, x, batch_size)[:, 1]


def _predict_probs(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """Both class probabilities (N, 2) float32, with the input checks of ``predict_proba``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"features must have shape (N, T, D) with N > 0, got {x.shape}")
    expected = tuple(model.inputs[0].shape[1:])
    if any(e is not None and e != a for e, a in zip(expected, x.shape[1:])):
        raise ValueError(f"model {model.name!r} expects clips of shape {expected}, got {x.shape[1:]}")
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(probs, (list, tuple)):  # e.g. an attention_model: probabilities come first
        probs = probs[0]
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != 2:
        raise ValueError(f"model {model.name!r} must output (N, 2) probabilities, got {probs.shape}")
    return probs.astype(np.float32)


# --- plots --------------------------------------------------------------------------------

def plot_training_history(history_df: pd.DataFrame, gap_warning: float = 0.15, gap_critical: float = 0.25,
                          best_epoch: int | None = None) -> Figure:
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
        raise ValueError("history_df must be a non-empty DataFrame with at least a 'loss' column "
                         "(read history.csv with pandas.read_csv)")
    _check_gap_thresholds(gap_warning, gap_critical)
    epochs = history_df["epoch"] if "epoch" in history_df else np.arange(1, len(history_df) + 1)
    fig = Figure(figsize=(12, 8), layout="constrained")
    (ax_loss, ax_acc), (ax_class, ax_gap) = fig.subplots(2, 2, sharex=True)
    panels = [
        (ax_loss, "Loss", [("loss", "train"), ("val_loss", "validation")]),
        (ax_acc, "Accuracy", [("accuracy", "train"), ("val_accuracy", "validation"),
                              ("val_balanced_accuracy", "validation balanced")]),
        (ax_class, "Validation accuracy per class", [("val_acc_nonviolent", "non-violent"),
                                                     ("val_acc_violent", "violent")]),
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


def load_sequence_model(path) -> keras.Model:
    """Load a ``.keras`` model saved by this library, in Keras safe mode.

    This module defines (and so registers) the focal loss and the learning-rate
    schedule that a compiled, saved model refers to.

    Args:
        path: the ``.keras`` file.

    Returns:
        The reloaded model.
    """
    return keras.models.load_model(path, safe_mode=True)
