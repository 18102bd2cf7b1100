"""How this process computes: seeds, the Keras dtype policy, and the tf.distribute strategy.

Training, feature extraction and benchmarks all set these up the same way, from here.
TensorFlow is imported lazily, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np

logger = logging.getLogger("nexara.runtime")

PRECISION_MODES = ("auto", "on", "off")  # mixed_precision parameter values


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; optionally make TF ops deterministic.

    Args:
        seed: non-negative integer.
        deterministic: also call ``tf.config.experimental.enable_op_determinism``
            (same seed, same data -> same numbers; slower on GPU).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # for any subprocess started later
    random.seed(seed)
    np.random.seed(seed)
    import keras

    keras.utils.set_random_seed(seed)  # also seeds tf.random and resets Keras' global seed generator
    if deterministic:
        import tensorflow as tf

        try:
            tf.config.experimental.enable_op_determinism()
        except Exception as err:  # older/odd builds: seeding still helps, so carry on
            logger.warning("could not enable TensorFlow op determinism (%s); results may vary slightly", err)


def configure_precision(mode: str = "auto") -> str:
    """Set the global Keras dtype policy.

    Args:
        mode: 'auto' (mixed_float16 only when a GPU is visible), 'on'
            (mixed_float16) or 'off' (float32).

    Returns:
        The name of the policy now in force.
    """
    if mode not in PRECISION_MODES:
        raise ValueError(f"mixed precision mode {mode!r} is not one of {list(PRECISION_MODES)}")
    if mode == "auto":
        import tensorflow as tf

        # float16 only pays off (and is only well supported) on GPUs
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    else:
        policy = "mixed_float16" if mode == "on" else "float32"
    import keras

    keras.mixed_precision.set_global_policy(policy)
    return policy


def distribution_strategy(mode: str = "auto", devices=None):
    """The tf.distribute strategy training runs under.

    Args:
        mode: 'auto' uses ``MirroredStrategy`` over every GPU when more than one is visible,
            'off' always one device.
        devices: explicit device names to mirror over (e.g. two logical CPUs in a test);
            overrides ``mode``.

    Returns:
        A strategy; ``num_replicas_in_sync`` tells how many copies train in step.
    """
    import tensorflow as tf

    if mode not in ("auto", "off"):
        raise ValueError(f"multi_gpu must be 'auto' or 'off', got {mode!r}")
    if devices:
        return tf.distribute.MirroredStrategy(devices=list(devices))
    if mode == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()  # the default (single-device) strategy


# keys that change how a run is observed, not what it computes: a checkpoint stays valid across them
