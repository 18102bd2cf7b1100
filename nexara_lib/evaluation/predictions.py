"""Predictions of one split, the validation-only guard, input checks and logit/sigmoid.

Everything in the evaluation package works on NumPy arrays of predicted
probabilities of the violent class (label 1). Honesty by API: every function that
*chooses* something (a threshold, a temperature, ensemble weights, TTA views) takes
a ``Predictions`` object and calls ``require_validation``, so choosing on test data
is an error instead of a silent leak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from nexara_lib.labels import predict_labels

SPLITS = ("train", "val", "test")
PROB_EPS = 1e-7  # probability clip before logits / logs, so 0 and 1 stay finite


@dataclasses.dataclass(frozen=True, eq=False)
class Predictions:
    """Labels and predicted probabilities of one split.

    Args:
        split: "train", "val" or "test": the data the probabilities were made on.
        y_true: (N,) labels, 0 = non-violent, 1 = violent.
        prob: (N,) predicted probability of the violent class, in [0, 1].
        clip_ids: optional N identifiers (e.g. manifest clip ids), one per row.
    """

    split: str
    y_true: np.ndarray
    prob: np.ndarray
    clip_ids: tuple | None = None

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"Predictions.split must be one of {SPLITS}, got {self.split!r}")
        y = check_labels(self.y_true, "Predictions.y_true")
        p = check_probabilities(self.prob, "Predictions.prob")
        if len(y) != len(p):
            raise ValueError(
                f"Predictions: y_true has {len(y)} rows but prob has {len(p)}; pass one probability per labelled clip"
            )
        ids = self.clip_ids
        if ids is not None:
            ids = tuple(i.item() if isinstance(i, np.generic) else i for i in ids)
            if len(ids) != len(y):
                raise ValueError(f"Predictions: clip_ids has {len(ids)} entries but y_true has {len(y)}")
        # Read-only copies: a frozen record should not change under the caller's feet.
        y, p = y.copy(), p.copy()
        y.setflags(write=False)
        p.setflags(write=False)
        object.__setattr__(self, "y_true", y)
        object.__setattr__(self, "prob", p)
        object.__setattr__(self, "clip_ids", ids)

    def __len__(self) -> int:
        return len(self.y_true)

    def pred(self, threshold: float = 0.5) -> np.ndarray:
        """Hard labels: 1 where ``prob >= threshold``."""
        return predict_labels(self.prob, threshold)

    def with_prob(self, prob) -> Predictions:
        """The same clips and split with new probabilities (e.g. after TTA or scaling)."""
        return dataclasses.replace(self, prob=np.asarray(prob, dtype=np.float64))


def require_validation(preds, what: str) -> None:
    """Refuse to choose ``what`` on anything but validation predictions.

    Args:
        preds: a ``Predictions`` object (or a list of them).
        what: what is being chosen, used in the error message (e.g. "the threshold").

    Raises:
        ValueError: if any of ``preds`` is not a ``Predictions`` with split "val".
    """
    items = preds if isinstance(preds, (list, tuple)) else [preds]
    if not items:
        raise ValueError(f"{what}: got no predictions; pass validation Predictions(split='val', ...)")
    for item in items:
        if not isinstance(item, Predictions):
            raise ValueError(
                f"{what} needs Predictions(split='val', y_true=..., prob=...), got "
                f"{type(item).__name__}; wrap validation arrays in Predictions so the split is explicit"
            )
        if item.split != "val":
            raise ValueError(
                f"{what} must be chosen on the validation split, got {item.split!r}: choosing it on "
                f"{item.split} data leaks those labels into the result and inflates reported metrics; "
                "pass Predictions(split='val', ...) made on the validation clips"
            )


def require_same_clips(preds_list: Sequence[Predictions], what: str) -> np.ndarray:
    """Check that several Predictions describe the same clips; return their labels."""
    first = preds_list[0]
    for i, other in enumerate(preds_list[1:], start=1):
        if len(other) != len(first) or not np.array_equal(other.y_true, first.y_true):
            raise ValueError(
                f"{what}: predictions #{i} have different labels/length than #0; every member/view "
                "must be evaluated on the same clips in the same order"
            )
        if first.clip_ids is not None and other.clip_ids is not None and first.clip_ids != other.clip_ids:
            raise ValueError(f"{what}: predictions #{i} have different clip_ids than #0; align them by clip first")
    return first.y_true


def check_preds_by_split(preds_by_split: Mapping[str, Predictions], what: str) -> None:
    """Check a non-empty ``{split name: Predictions}`` dict, or raise ValueError naming ``what``."""
    if not preds_by_split:
        raise ValueError(f"{what}: pass a non-empty dict like {{'val': Predictions(...), 'test': Predictions(...)}}")
    for name, preds in preds_by_split.items():
        if not isinstance(preds, Predictions):
            raise ValueError(f"{what}: entry {name!r} must be a Predictions, got {type(preds).__name__}")


def check_labels(y_true, name: str = "y_true") -> np.ndarray:
    """Return ``y_true`` as a 1-D int64 array of 0/1, or raise ValueError."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of 0/1 labels, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise ValueError(f"{name} must hold only 0 (non-violent) and 1 (violent), found {bad.tolist()}")
    return y.astype(np.int64)


def check_probabilities(prob, name: str = "prob") -> np.ndarray:
    """Return ``prob`` as a 1-D float64 array in [0, 1], or raise ValueError."""
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of probabilities of the violent class, got shape {p.shape}; "
            "for a 2-way softmax output pass probs[:, 1]"
        )
    if not np.isfinite(p).all() or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError(
            f"{name} must be finite probabilities in [0, 1]; got min {np.nanmin(p) if p.size else None}, "
            f"max {np.nanmax(p) if p.size else None}, NaN/inf present: {not np.isfinite(p).all()}"
        )
    return p


def check_pair(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    """Check labels and probabilities of the same non-empty set of clips; return them as arrays."""
    y = check_labels(y_true)
    p = check_probabilities(prob)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but prob has {len(p)}; pass one probability per clip")
    if len(y) == 0:
        raise ValueError("got no clips: y_true and prob are empty")
    return y, p


def logit(prob) -> np.ndarray:
    """Log-odds of ``prob`` (clipped to [1e-7, 1 - 1e-7] so 0 and 1 stay finite)."""
    p = np.clip(np.asarray(prob, dtype=np.float64), PROB_EPS, 1 - PROB_EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    """Inverse of ``logit``."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))
