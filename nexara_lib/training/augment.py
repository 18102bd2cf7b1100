"""Feature-space augmentation of a training set of cached clip features.

The ops are the feature-level augmentation transforms of the transform registry
(``available_transforms("feature", "augment")``), named in the ``augment_ops`` parameter;
they act on float32 arrays of shape ``(N, T, D)`` (one feature sequence per clip) with labels
``y`` of shape ``(N,)`` and never change shapes or labels. ``augment_training_set`` grows a
training set with them, class-balanced.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nexara_lib.transforms.registry import check_transform_names, get_transform


def _check_ops(ops: Sequence[str]) -> list[str]:
    return check_transform_names(ops, level="feature", use="augment", what="augment_ops")


def _check_batch(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 3:
        raise ValueError(f"features must have shape (N, T, D) (clips, time steps, feature size), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},) to match the features, got {y.shape}")
    return x, y


def _run_op(name: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One op on one batch: its draw takes nothing from ``rng`` (fixed settings), its per-clip randomness does."""
    op = get_transform(name)
    if op.draw is None:
        raise ValueError(f"{name!r} is not a feature augmentation op (it has no random draw); check augment_ops")
    return op.apply(x, op.draw(rng), rng=rng, labels=y).astype(np.float32, copy=False)


def apply_augmentation(name: str, x, y, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Apply one feature-level augmentation op to a batch.

    Args:
        name: op name (see ``available_transforms("feature", "augment")``).
        x: features ``(N, T, D)``.
        y: labels ``(N,)`` (``mix`` pairs samples of the same label only).
        rng: a numpy Generator or an int seed.

    Returns:
        Augmented features, float32, same shape as ``x``.
    """
    _check_ops([name])
    x, y = _check_batch(x, y)
    return _run_op(name, x, y, np.random.default_rng(rng))


# --- training-set growth --------------------------------------------------------------


def augment_training_set(
    x, y, factor: float, ops: Sequence[str], rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grow a training set about ``factor`` times, class-balanced, with augmented copies.

    Each class is topped up to ``max(round(factor * N / 2), largest class count)``
    clips: balance wins over the exact total when the classes are very unequal.
    Each new copy is one op (cycled over ``ops``) applied to an original of its
    class; sources are cycled so every original is used about equally.

    Args:
        x: features ``(N, T, D)``.
        y: labels ``(N,)`` in {0, 1}.
        factor: target size as a multiple of N (>= 1; 1 returns the originals unchanged).
        ops: op names from ``available_transforms("feature", "augment")``.
        rng: a numpy Generator or an int seed.

    Returns:
        ``(x_aug, y_aug)``: the originals first, then the new copies (float32 / int64).
    """
    x, y = _check_batch(x, y)
    ops = _check_ops(ops)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
        raise ValueError(f"augment factor must be a number >= 1 (1 = no augmentation), got {factor!r}")
    labels = set(np.unique(y).tolist())
    if not labels <= {0, 1}:
        raise ValueError(f"labels must be 0 (non-violent) or 1 (violent), got values {sorted(labels)}")
    y = y.astype(np.int64)
    if factor == 1:
        return x, y
    rng = np.random.default_rng(rng)
    counts = {c: int(np.sum(y == c)) for c in (0, 1)}
    per_class = max(int(round(factor * len(y) / 2)), max(counts.values()))
    new_x, new_y = [x], [y]
    for label in (0, 1):
        members = np.flatnonzero(y == label)
        needed = per_class - len(members)
        if needed <= 0 or len(members) == 0:
            continue
        op_of_copy = np.array(ops)[(rng.permutation(needed) % len(ops))]
        for op in dict.fromkeys(ops):  # a repeated name weights that op, it must not run twice
            count = int(np.sum(op_of_copy == op))
            if count == 0:
                continue
            # run the op on at least the whole class so `mix` always has same-class partners,
            # then keep the first `count` outputs; cycling a permutation spreads the sources evenly
            size = max(count, len(members))
            order = np.concatenate([rng.permutation(members) for _ in range(-(-size // len(members)))])[:size]
            batch_y = y[order]
            new_x.append(_run_op(op, x[order], batch_y, rng)[:count])
            new_y.append(batch_y[:count])
    return np.concatenate(new_x), np.concatenate(new_y)
