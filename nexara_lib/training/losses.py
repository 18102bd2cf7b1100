"""The training loss: binary focal loss on 2-way softmax outputs, and its class weight from labels.

``FocalLoss`` is a registered serializable class (package ``nexara``): a compiled model saved
as ``.keras`` refers to it, so loading one needs this module imported
(``nexara_lib.training.model_files`` does).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from nexara_lib.config import SCHEMA


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

    def __init__(
        self,
        gamma: float = SCHEMA["focal_gamma"].default,
        alpha: float = 0.5,
        label_smoothing: float = SCHEMA["label_smoothing"].default,
        name: str = "focal_loss",
        reduction: str = "sum_over_batch_size",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
            raise ValueError(f"focal loss gamma must be a number >= 0, got {gamma!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ValueError(f"focal loss alpha (weight of the violent class) must be in (0, 1), got {alpha!r}")
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, (int, float))
            or not 0 <= label_smoothing < 1
        ):
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
        raise ValueError(
            f"alpha_from_labels needs labels in {{0, 1}} with both classes present; "
            f"got counts non-violent={counts[0]}, violent={counts[1]} of {y.size} labels"
        )
    return counts[0] / y.size
