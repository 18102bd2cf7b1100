"""Saved models: an atomic ``.keras`` save, and a safe-mode load that knows every custom object.

A compiled model saved by this library refers to the focal loss, the learning-rate schedule
and the custom layers; Keras safe mode only finds registered classes, so this module imports
all of them (``SAVED_CUSTOM_OBJECTS``) before any load.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from nexara_lib.io import atomic_path
from nexara_lib.training.layers import PositionalEmbedding, TemporalAttention
from nexara_lib.training.losses import FocalLoss
from nexara_lib.training.pooled import TemporalPooling
from nexara_lib.training.schedule import WarmupCosine

# what a saved model of this library may refer to; importing them registered them with Keras
SAVED_CUSTOM_OBJECTS = (FocalLoss, WarmupCosine, TemporalAttention, PositionalEmbedding, TemporalPooling)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Save a ``.keras`` model atomically (Keras picks the format from the suffix)."""
    with atomic_path(path, keep_suffix=True) as tmp:
        model.save(tmp)


class CorruptModelFile(ValueError):
    """A model file exists but is not a complete ``.keras`` archive (a crash or full disk while saving)."""


def load_sequence_model(path) -> keras.Model:
    """Load a ``.keras`` model saved by this library, in Keras safe mode.

    The focal loss, the learning-rate schedule and the custom layers that a compiled,
    saved model refers to are registered by this module's imports.

    Args:
        path: the ``.keras`` file.

    Returns:
        The reloaded model.

    Raises:
        FileNotFoundError: there is no such file.
        CorruptModelFile: the file is truncated or not a ``.keras`` archive (path, size, what to do).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist; run the notebook that trains it first")
    corrupt = (
        f"model file {path} ({path.stat().st_size:,} bytes) is corrupt or truncated, not a complete .keras "
        "archive (a crash or a full disk while it was saved); delete it and rerun the notebook that trains it"
    )
    if not zipfile.is_zipfile(path):
        raise CorruptModelFile(corrupt)
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (zipfile.BadZipFile, EOFError, KeyError, OSError) as err:
        raise CorruptModelFile(
            f"{corrupt} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
