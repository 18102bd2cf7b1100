"""The learning rate and the optimizer: linear warm-up then cosine decay, Adam/AdamW/SGD with clipping.

``WarmupCosine`` is a registered serializable class (package ``nexara``): a compiled model
saved as ``.keras`` refers to it, so loading one needs this module imported
(``nexara_lib.training.model_files`` does).
"""

from __future__ import annotations

import math

import keras
from keras import ops


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
            raise ValueError(
                f"WarmupCosine needs 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                f"got warmup_steps={warmup_steps!r}, total_steps={total_steps!r}"
            )
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
        return {
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "min_lr": self.min_lr,
        }


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
