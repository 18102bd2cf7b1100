"""The steps of one training run, in the order ``train_sequence_model`` takes them.

A fresh Keras session (seed, precision, distribution), the augmented training set with its
class weighting, the compiled model (restored from a checkpoint when resuming), the
callbacks in the order fit must call them, and the fit itself (or, when a checkpoint says
the fit had finished, the restore of its best weights). The fit reads its batches from
``epoch_batches``: each epoch's order of the clips depends on (seed, epoch) only, like the
rest of its random state (``checkpoints.EpochRandomState``), so a resumed run trains exactly as
an uninterrupted one. A closed-form fit (``train._fit_closed_form``)
uses the session, the un-augmented training set and ``build_model``, nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from nexara_lib.runtime import configure_precision, distribution_strategy, set_seed
from nexara_lib.training.arrays import one_hot, pipeline_options
from nexara_lib.training.augment import augment_training_set
from nexara_lib.training.checkpoints import (
    CheckpointState,
    EpochRandomState,
    ResumableCheckpoint,
    ResumableEarlyStopping,
    shuffle_order,
)
from nexara_lib.training.losses import FocalLoss, alpha_from_labels
from nexara_lib.training.models import adapt_input_normalization, create_sequence_model, model_params_from_config
from nexara_lib.training.monitor import EpochClock, PerClassMonitor, StopOnNonFiniteLoss, monitor_mode
from nexara_lib.training.schedule import WarmupCosine, make_optimizer


@dataclasses.dataclass
class Session:
    """Where and how a run computes: its precision policy and its distribution over devices."""

    policy: str
    strategy: Any
    replicas: int
    global_batch: int  # batch_size is per replica


@dataclasses.dataclass
class TrainingSet:
    """What the loss sees: the augmented training clips and the class weighting derived from them."""

    x: np.ndarray
    y: np.ndarray
    alpha: float
    class_weight: dict | None
    seconds: float  # spent augmenting


@dataclasses.dataclass
class RunCallbacks:
    """The run's stateful callbacks, and every callback in the order fit calls them."""

    per_class: PerClassMonitor
    early_stopping: ResumableEarlyStopping
    checkpoint: ResumableCheckpoint
    random_state: EpochRandomState
    ordered: list


def start_session(cfg: Mapping[str, Any], devices) -> Session:
    """A fresh Keras session: seeds, precision policy and distribution strategy."""
    # clear_session first: it also resets the dtype policy and seeds that the next lines set
    keras.backend.clear_session(free_memory=True)
    set_seed(cfg["seed"])
    policy = configure_precision(cfg["mixed_precision"])
    strategy = distribution_strategy(cfg["multi_gpu"], devices)
    replicas = int(strategy.num_replicas_in_sync)
    return Session(policy, strategy, replicas, cfg["batch_size"] * replicas)


def prepare_training_set(x_train: np.ndarray, y_train: np.ndarray, cfg: Mapping[str, Any]) -> TrainingSet:
    """Class-balanced augmentation, then the focal alpha and class weights of the augmented set."""
    t0 = time.perf_counter()
    x_fit, y_fit = augment_training_set(
        x_train, y_train, cfg["augment_factor"], cfg["augment_ops"], np.random.default_rng(cfg["seed"])
    )
    seconds = time.perf_counter() - t0
    # alpha and class weights follow the set the loss actually sees (balanced after augmentation)
    alpha = alpha_from_labels(y_fit) if cfg["focal_alpha"] == "auto" else float(cfg["focal_alpha"])
    class_weight = {c: len(y_fit) / (2.0 * np.sum(y_fit == c)) for c in (0, 1)} if cfg["class_weights"] else None
    return TrainingSet(x_fit, y_fit, alpha, class_weight, seconds)


def build_model(cfg: Mapping[str, Any], x_train: np.ndarray) -> keras.Model:
    """The run's registered model with its standardisation adapted to the training clips (build it under the
    session's strategy scope)."""
    model = create_sequence_model(cfg["model"], x_train.shape[1:], **model_params_from_config(cfg))
    adapt_input_normalization(model, x_train)
    return model


def build_and_compile(
    cfg: Mapping[str, Any],
    x_train: np.ndarray,
    training_set: TrainingSet,
    session: Session,
    previous: CheckpointState | None,
) -> keras.Model:
    """The model with its input standardisation adapted, compiled, and restored from ``previous`` if any."""
    steps_per_epoch = math.ceil(len(training_set.y) / session.global_batch)
    with session.strategy.scope():
        model = build_model(cfg, x_train)
        schedule = WarmupCosine(
            cfg["learning_rate"], cfg["warmup_epochs"] * steps_per_epoch, cfg["epochs"] * steps_per_epoch
        )
        model.compile(
            optimizer=make_optimizer(cfg["optimizer"], schedule, cfg["gradient_clip_norm"]),
            loss=FocalLoss(cfg["focal_gamma"], training_set.alpha, cfg["label_smoothing"]),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        # Build the optimizer's state now (also so a checkpoint's optimizer state loads): variables created while
        # Keras traces the first training step make TensorFlow trace that step a second time.
        model.optimizer.build(model.trainable_variables)
        if previous is not None:
            previous.restore_model(model)
    return model


def make_callbacks(
    cfg: Mapping[str, Any],
    x_val,
    y_val,
    out_dir: Path,
    fingerprint: str,
    previous: CheckpointState | None,
    verbose: int,
) -> RunCallbacks:
    """Random state, per-class monitor, NaN stop, early stopping, epoch clock, checkpoint (and TensorBoard), in
    that order."""
    monitor = cfg["early_stopping_monitor"]
    random_state = EpochRandomState(cfg["seed"], previous)
    per_class = PerClassMonitor(
        x_val,
        y_val,
        cfg["gap_warning"],
        cfg["gap_critical"],
        verbose=verbose,
        stop_patience=cfg["gap_stop_patience"],
        with_loss=True,
    )
    per_class.restore(previous.data.get("gap_monitor") if previous else None)
    early_stopping = ResumableEarlyStopping(
        monitor=monitor,
        mode=monitor_mode(monitor),
        patience=cfg["early_stopping_patience"],
        restore_best_weights=True,
        verbose=min(verbose, 1),
        resume_from=previous,
    )
    checkpoint = ResumableCheckpoint(
        out_dir / "checkpoint",
        fingerprint,
        early_stopping,
        per_class,
        previous,
        interval_s=cfg["checkpoint_interval_s"],
        random_state=random_state,
    )
    # order matters: the epoch's random state is set before anything draws from it; the monitor fills the
    # logs (val_loss included) that early stopping, the checkpoint and History read
    ordered = [random_state, per_class, StopOnNonFiniteLoss(), early_stopping, EpochClock(), checkpoint]
    if cfg["tensorboard"]:
        ordered.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False))
    return RunCallbacks(per_class, early_stopping, checkpoint, random_state, ordered)


def epoch_batches(training_set: TrainingSet, seed: int, batch_size: int, initial_epoch: int, epochs: int):
    """The training batches of epochs ``initial_epoch`` .. ``epochs - 1`` (0-based), as one ``tf.data`` pass.

    Epoch e visits the clips in ``shuffle_order(seed, e, n)``, in ``ceil(n / batch_size)`` batches (the last
    one may be short) of (clips, one-hot targets[, class weights as sample weights]). Fit it with
    ``steps_per_epoch = ceil(n / batch_size)``, so Keras reads on instead of restarting the pass at every epoch.
    (Keras' own ``shuffle=True`` on arrays draws its order in a ``tf.data`` map seeded by the global seed:
    with the seed set, every epoch got the same order.)
    """
    import tensorflow as tf

    n = len(training_set.y)
    index_dtype = np.int32 if n < 2**31 else np.int64  # one index per clip and epoch: keep it small
    orders = np.stack([shuffle_order(seed, epoch, n).astype(index_dtype) for epoch in range(initial_epoch, epochs)])
    arrays = [training_set.x, one_hot(training_set.y)]
    if training_set.class_weight:  # what fit(class_weight=...) would do: each clip weighted by its class
        weight = training_set.class_weight
        arrays.append(np.array([weight[0], weight[1]], dtype=np.float32)[training_set.y])
    indices = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    )
    batches = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(tuple(arrays)).repeat())).map(
        lambda index, data: tuple(tf.gather(a, index, axis=0) for a in data)
    )
    # two batches ahead: the gather is a copy, far cheaper than a training step, so deeper buffers gain nothing
    return batches.with_options(pipeline_options()).prefetch(2)


def fit_or_restore(
    model: keras.Model,
    cfg: Mapping[str, Any],
    training_set: TrainingSet,
    session: Session,
    callbacks: RunCallbacks,
    previous: CheckpointState | None,
    verbose: int,
) -> pd.DataFrame:
    """Fit from the resumed epoch (or restore the best weights of a finished fit); the whole history."""
    initial_epoch = previous.epochs_done if previous else 0
    if previous is not None and (previous.training_done or initial_epoch >= cfg["epochs"]):
        best = previous.best_weights()  # fit had finished; only the artifacts were missing
        if best is not None:
            model.set_weights(best)
        new_rows = []
    else:
        # no validation_data: the per-class monitor predicts the validation clips once per epoch and
        # logs val_loss / val_accuracy from those predictions
        batches = epoch_batches(training_set, cfg["seed"], session.global_batch, initial_epoch, cfg["epochs"])
        fit = model.fit(
            batches,
            epochs=cfg["epochs"],
            initial_epoch=initial_epoch,
            steps_per_epoch=math.ceil(len(training_set.y) / session.global_batch),
            shuffle=False,
            callbacks=callbacks.ordered,
            verbose=verbose,
        )
        n_new = len(fit.history.get("loss", []))
        new_rows = [{"epoch": initial_epoch + i + 1, **{k: v[i] for k, v in fit.history.items()}} for i in range(n_new)]
    resumed_rows = previous.rows if previous else []
    return pd.DataFrame(resumed_rows + new_rows)
