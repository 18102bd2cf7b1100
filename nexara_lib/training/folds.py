"""Grouped, stratified folds for small datasets, with an inner validation set per fold.

Every fold has three disjoint parts of the development pool (train + val; the test split is
never in it):

- ``evaluate``: the held-out clips the fold is scored on;
- ``inner_val``: carved from the fold's training clips, used for early stopping only;
- ``fit``: the rest, what the model is trained on.

Clips of one source group (``group`` column of the manifest: the same recording, the same
camera, a near-duplicate) always land in the same part, so a fold never scores a model on a
recording it has seen. Folds are stratified by class as far as the groups allow; a part
without both classes is a clear error.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


@dataclasses.dataclass(frozen=True)
class Fold:
    """Indices into the development pool."""

    name: str
    fit: np.ndarray
    inner_val: np.ndarray
    evaluate: np.ndarray

    def describe(self, y: np.ndarray) -> dict:
        def count(idx):
            return f"{len(idx)} ({int(np.sum(y[idx] == 1))} violent)"

        return {
            "fold": self.name,
            "fit": count(self.fit),
            "inner validation": count(self.inner_val),
            "evaluate": count(self.evaluate),
        }


def _check_inputs(y, groups) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    groups = np.asarray(groups).astype(str)
    if y.ndim != 1 or groups.shape != y.shape or len(y) == 0:
        raise ValueError(
            f"labels and groups must be two 1-d arrays of the same non-zero length, got {y.shape} and {groups.shape}"
        )
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError(f"labels must be 0/1, got {sorted(set(np.unique(y).tolist()))}")
    return y, groups


def _both_classes(y, idx) -> bool:
    return len(np.unique(y[idx])) == 2


def _split_off(
    idx: np.ndarray, y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) with ``held`` about 1/n_splits of ``idx``, whole groups, both classes on each side."""
    n_groups = len(np.unique(groups[idx]))
    if n_groups < 2:
        raise ValueError(
            f"cannot carve {what} from {len(idx)} clips in {n_groups} source group: at least 2 groups are needed"
        )
    splitter = StratifiedGroupKFold(n_splits=min(n_splits, n_groups), shuffle=True, random_state=seed)
    for rest, held in splitter.split(np.zeros(len(idx)), y[idx], groups[idx]):
        if _both_classes(y, idx[rest]) and _both_classes(y, idx[held]):
            return np.sort(idx[rest]), np.sort(idx[held])
    raise ValueError(
        f"cannot carve {what} with both classes on each side from {len(idx)} clips in {n_groups} "
        "source groups; the groups are too few or hold one class each (use fewer folds or more data)"
    )


def grouped_folds(y, groups, k: int, seed: int = 0, inner_splits: int | None = None) -> list[Fold]:
    """k grouped, stratified folds over the development pool.

    Args:
        y: labels (N,) of the development pool.
        groups: source group of each clip (N,).
        k: number of folds (>= 2).
        seed: shuffles the assignment of groups to folds.
        inner_splits: the inner validation is 1/inner_splits of a fold's training clips
            (default k: a fold's inner validation is about as big as its held-out part).

    Returns:
        k ``Fold`` objects; every clip is evaluated in exactly one fold.
    """
    y, groups = _check_inputs(y, groups)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"cv_folds must be an integer >= 2, got {k!r}")
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise ValueError(
            f"cv_folds = {k} but the train+val clips come from only {n_groups} source groups; "
            f"use cv_folds <= {n_groups}"
        )
    for c, name in ((0, "non-violent"), (1, "violent")):
        class_groups = len(np.unique(groups[y == c]))
        if class_groups < k:
            raise ValueError(
                f"cv_folds = {k} but the {name} clips come from only {class_groups} source groups, "
                f"so some fold would have no {name} clip; use cv_folds <= {class_groups}"
            )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (train, held) in enumerate(splitter.split(np.zeros(len(y)), y, groups), start=1):
        if not _both_classes(y, held):
            raise ValueError(
                f"fold {i} of {k} has only one class in its held-out part (groups are too unevenly "
                f"labelled for {k} folds); use fewer folds"
            )
        fit, inner = _split_off(train, y, groups, inner_splits or k, seed + i, f"the inner validation of fold {i}")
        folds.append(Fold(f"fold{i}", fit, inner, np.sort(held)))
    return folds


def holdout_fold(y, groups, is_train, seed: int = 0, inner_splits: int = 5) -> Fold:
    """The fixed split as one 'fold': fit on train, early-stop on a grouped carve of train, score on val.

    Args:
        y: labels of the development pool (train + val).
        groups: source group of each clip.
        is_train: boolean (N,): True for the train split, False for val.
        seed: picks the inner validation groups.
        inner_splits: the inner validation is about 1/inner_splits of train.
    """
    y, groups = _check_inputs(y, groups)
    is_train = np.asarray(is_train, dtype=bool)
    train, val = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    if not _both_classes(y, val):
        raise ValueError("the val split needs both classes to score the configurations on it")
    fit, inner = _split_off(train, y, groups, inner_splits, seed, "an inner validation from train")
    return Fold("holdout", fit, inner, val)
