"""Watching a training run epoch by epoch: per-class validation accuracy and its gap, the epoch clock,
the stop on a non-finite loss, and which way each monitorable metric should go.

``PerClassMonitor`` puts ``PER_CLASS_LOG_KEYS`` (and ``val_loss`` / ``val_accuracy``) into the
epoch logs, so callbacks placed after it (early stopping, checkpoint, History) see them; a gap
above the thresholds is logged on ``nexara.training``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

import keras
import numpy as np
from keras import ops
from sklearn.metrics import roc_auc_score

from nexara_lib.config import SCHEMA
from nexara_lib.labels import per_class_accuracy
from nexara_lib.training.arrays import check_split, one_hot, predict_class_probabilities

logger = logging.getLogger("nexara.training")

# metrics PerClassMonitor adds to the epoch logs (validation set, threshold 0.5)
PER_CLASS_LOG_KEYS = ("val_acc_nonviolent", "val_acc_violent", "val_class_gap", "val_balanced_accuracy", "val_auc")
MONITORABLE = ("val_loss", "val_accuracy") + PER_CLASS_LOG_KEYS


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
    return {
        "acc_nonviolent": accs[0],
        "acc_violent": accs[1],
        "class_gap": abs(accs[0] - accs[1]),
        "balanced_accuracy": (accs[0] + accs[1]) / 2,
        "auc": auc,
    }


def gap_status(gap: float, gap_warning: float, gap_critical: float) -> str:
    """'critical' above gap_critical, 'warning' above gap_warning, else 'ok' (NaN -> 'unknown')."""
    if not np.isfinite(gap):
        return "unknown"
    if gap > gap_critical:
        return "critical"
    return "warning" if gap > gap_warning else "ok"


def check_gap_thresholds(gap_warning, gap_critical) -> None:
    """Both gap thresholds in [0, 1], the warning one not above the critical one."""
    if not 0 <= gap_warning <= gap_critical <= 1:
        raise ValueError(
            f"gap thresholds must satisfy 0 <= gap_warning <= gap_critical <= 1, "
            f"got gap_warning={gap_warning!r}, gap_critical={gap_critical!r}"
        )


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

    def __init__(
        self,
        x_val,
        y_val,
        gap_warning: float = SCHEMA["gap_warning"].default,
        gap_critical: float = SCHEMA["gap_critical"].default,
        batch_size: int = 256,
        verbose: int = 1,
        stop_patience: int = SCHEMA["gap_stop_patience"].default,
        with_loss: bool = False,
    ):
        super().__init__()
        self.x_val, self.y_val = check_split(x_val, y_val, "validation")
        check_gap_thresholds(gap_warning, gap_critical)
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
        loss = self.model.loss(one_hot(self.y_val), probs.astype(np.float32))
        penalty = sum(float(ops.convert_to_numpy(ops.cast(term, "float32"))) for term in self.model.losses)
        return {
            "val_loss": float(ops.convert_to_numpy(loss)) + penalty,
            "val_accuracy": float(np.mean(np.argmax(probs, axis=1) == self.y_val)),
        }

    def state(self) -> dict:
        """What a resumed run needs to keep counting the critical streak."""
        return {"critical_streak": self.critical_streak, "stopped_epoch": self.stopped_epoch}

    def restore(self, state: Mapping | None) -> None:
        if state:
            self.critical_streak = int(state.get("critical_streak", 0))
            self.stopped_epoch = state.get("stopped_epoch")

    def on_epoch_end(self, epoch, logs=None):
        probs = predict_class_probabilities(self.model, self.x_val, self.batch_size)
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
                f", accuracy {float(logs['accuracy']):.3f}; " if "accuracy" in logs else "; "
            )
        message = (
            f"epoch {epoch + 1}: {train}validation accuracy non-violent {metrics['acc_nonviolent']:.3f}, "
            f"violent {metrics['acc_violent']:.3f}, gap {metrics['class_gap']:.3f}, "
            f"balanced {metrics['balanced_accuracy']:.3f}, AUC {metrics['auc']:.3f}"
        )
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
            stop = (
                f"stopping: the class gap has been critical (> {self.gap_critical:.2f}) for "
                f"{self.critical_streak} epochs in a row (gap_stop_patience = {self.stop_patience})"
            )
            logger.critical(stop)
            if self.verbose:
                print(stop, flush=True)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training after an epoch whose loss is NaN/inf.

    Checked once per epoch rather than per batch (``TerminateOnNaN``): a batch-level hook makes
    Keras copy the logs to the host after every batch, which stalls the device pipeline.
    """

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class EpochClock(keras.callbacks.Callback):
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
