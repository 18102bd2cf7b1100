"""Grouped, stratified folds with an inner validation set."""

import numpy as np
import pytest

from nexara_lib.training.folds import grouped_folds, holdout_fold


def grouped_pool(n_groups=12, per_group=5, seed=0):
    """Each group is one recording: all its clips share the label; labels alternate between groups."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(per_group - 2, per_group + 3, size=n_groups)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], sizes)
    y = np.repeat(np.arange(n_groups) % 2, sizes)
    return y, groups


def test_every_clip_is_evaluated_once_and_groups_never_straddle_parts():
    y, groups = grouped_pool()
    folds = grouped_folds(y, groups, k=4, seed=3)
    assert [f.name for f in folds] == ["fold1", "fold2", "fold3", "fold4"]
    evaluated = np.concatenate([f.evaluate for f in folds])
    assert sorted(evaluated.tolist()) == list(range(len(y)))
    for fold in folds:
        parts = [set(fold.fit), set(fold.inner_val), set(fold.evaluate)]
        assert set.union(*parts) == set(range(len(y)))
        assert sum(len(p) for p in parts) == len(y)  # disjoint
        part_groups = [set(groups[list(p)]) for p in parts]
        assert (
            not (part_groups[0] & part_groups[1])
            and not (part_groups[0] & part_groups[2])
            and not (part_groups[1] & part_groups[2])
        )
        for idx in (fold.fit, fold.inner_val, fold.evaluate):
            assert set(y[idx]) == {0, 1}
    assert folds[0].describe(y)["fold"] == "fold1"


def test_folds_are_deterministic_per_seed():
    y, groups = grouped_pool(n_groups=16)
    a, b = grouped_folds(y, groups, 4, seed=1), grouped_folds(y, groups, 4, seed=1)
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.evaluate, fb.evaluate)
        np.testing.assert_array_equal(fa.inner_val, fb.inner_val)
    c = grouped_folds(y, groups, 4, seed=2)
    assert any(not np.array_equal(fa.evaluate, fc.evaluate) for fa, fc in zip(a, c, strict=True))


@pytest.mark.parametrize(
    "k, match", [(1, ">= 2"), (20, "only 12 source groups"), (7, "violent clips come from only 6")]
)
def test_too_many_folds_is_a_clear_error(k, match):
    y, groups = grouped_pool()
    with pytest.raises(ValueError, match=match):
        grouped_folds(y, groups, k)


def test_holdout_scores_on_val_and_early_stops_on_a_carve_of_train():
    y, groups = grouped_pool(n_groups=14)
    is_train = np.isin(groups, [f"g{i}" for i in range(10)])
    fold = holdout_fold(y, groups, is_train, seed=0)
    np.testing.assert_array_equal(fold.evaluate, np.flatnonzero(~is_train))
    assert set(fold.fit) | set(fold.inner_val) == set(np.flatnonzero(is_train))
    assert not set(groups[fold.fit]) & set(groups[fold.inner_val])
    assert set(y[fold.inner_val]) == {0, 1}
    with pytest.raises(ValueError, match="val split needs both classes"):
        holdout_fold(y, groups, is_train | (y == 1))
