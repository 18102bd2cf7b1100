"""Arrays in and out of a sequence model: the checks on the splits' features and labels, one-hot
targets, class counts, the ``tf.data`` options of every input pipeline the library builds, and the
checked ``(N, 2)`` class probabilities a model predicts."""

from __future__ import annotations

import keras
import numpy as np

from nexara_lib.labels import CLASS_NAMES


def check_split(x, y, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, T, D) finite float32 and labels (N,) in {0, 1} with both classes present.

    Args:
        x: features of the split.
        y: labels of the split.
        split: the split's name for error messages ('training', 'validation').

    Returns:
        ``(x as float32, y as int64)``.
    """
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
        raise ValueError(
            f"the {split} split has no {' and no '.join(missing)} clips; both classes are needed "
            f"in the {split} split (re-split the data or add clips)"
        )
    return x, y.astype(np.int64)


def check_splits(x_train, y_train, x_val, y_val) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The training and validation splits, each checked with ``check_split``, with clips of the same (T, D)."""
    x_train, y_train = check_split(x_train, y_train, "training")
    x_val, y_val = check_split(x_val, y_val, "validation")
    if x_val.shape[1:] != x_train.shape[1:]:
        raise ValueError(
            f"validation clips have shape (T, D) = {x_val.shape[1:]} but training clips have "
            f"{x_train.shape[1:]}; use features from the same backbone and frames_per_clip"
        )
    return x_train, y_train, x_val, y_val


def one_hot(y: np.ndarray) -> np.ndarray:
    """Labels (N,) in {0, 1} as float32 one-hot targets (N, 2)."""
    return np.eye(2, dtype=np.float32)[y]


def class_counts(y: np.ndarray) -> dict:
    """``{class name: number of clips}`` for both classes."""
    return {CLASS_NAMES[c]: int(np.sum(y == c)) for c in (0, 1)}


def pipeline_options():
    """The ``tf.data.Options`` of every input pipeline the library builds: autotuning off.

    With autotuning on, each iterator gets a tuning thread that sleeps between its rounds, the
    rounds doubling in length, and in TensorFlow 2.21 deleting the iterator waits out that sleep
    with the CPU idle: measured (1 TensorFlow thread), an iterator read for 3 s took 2.1 s to delete,
    one read for 12 s 8.5 s, and with autotuning off 0.01 s. Every ``fit`` and ``predict`` ends by
    deleting its iterator, so a study unit spent up to half of its wall time waiting.
    Autotuning only sizes buffers and parallel calls: the batches and their order are the same.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def predict_arrays(model: keras.Model, x, batch_size: int = 256):
    """``model.predict`` on an array, in batches of ``batch_size`` read by a pipeline with ``pipeline_options``
    (Keras' own pipeline for arrays autotunes: see ``pipeline_options``)."""
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices(np.asarray(x, dtype=np.float32)).batch(batch_size)
    return model.predict(batches.with_options(pipeline_options()), verbose=0)


def predict_class_probabilities(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """Both class probabilities (N, 2) float32, after checking ``x`` against the model's input.

    Args:
        model: a model from ``create_sequence_model`` (output (N, 2) softmax; an
            ``attention_model`` works too, its probabilities come first).
        x: features (N, T, D).
        batch_size: clips per forward pass.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"features must have shape (N, T, D) with N > 0, got {x.shape}")
    expected = tuple(model.inputs[0].shape[1:])
    if len(expected) != x.ndim - 1 or any(e is not None and e != a for e, a in zip(expected, x.shape[1:], strict=True)):
        raise ValueError(f"model {model.name!r} expects clips of shape {expected}, got {x.shape[1:]}")
    probs = predict_arrays(model, x, batch_size)
    if isinstance(probs, (list, tuple)):  # e.g. an attention_model: probabilities come first
        probs = probs[0]
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != 2:
        raise ValueError(f"model {model.name!r} must output (N, 2) probabilities, got {probs.shape}")
    return probs.astype(np.float32)
