"""Tests for the synthetic RWF-2000-style dataset (nexara_lib.synthetic).

The last two tests pin down what the synthetic data is for: global motion
energy alone must not tell fights from the hard negatives, while the
structure of motion (optical-flow statistics) must.
"""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from video_utils import decode_all

from nexara_lib.features.flow import flow_features
from nexara_lib.video.synthetic import (
    CLIPS_PER_CAMERA,
    GENERATOR_VERSION,
    GROUPS_NAME,
    LISTING_COLUMNS,
    MARKER_NAME,
    NONVIOLENT_SCENARIOS,
    VAL_FRACTION,
    VIOLENT_SCENARIOS,
    generate_synthetic_dataset,
    render_clip,
)

N_SEPARABILITY_CLIPS = 100  # enough for 5-fold CV to be meaningful, small enough to stay ~20 s
T_SAMPLES = 16  # time steps sampled per clip for the flow features


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "rwf"
    return root, generate_synthetic_dataset(root, N_SEPARABILITY_CLIPS, seed=0)


@pytest.fixture(scope="module")
def clip_measurements(dataset):
    """Per clip: global motion energy, and flow features pooled over time."""
    _, listing = dataset
    energy, pooled = [], []
    for path in listing["path"]:
        frames = decode_all(path)
        gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]).astype(np.float32)
        energy.append(np.abs(np.diff(gray, axis=0)).mean())
        idx = np.linspace(0, len(frames) - 2, T_SAMPLES).round().astype(int)
        rgb = frames[..., ::-1]
        pairs = np.stack([rgb[idx], rgb[idx + 1]], axis=1)
        feats = flow_features(pairs)
        pooled.append(np.concatenate([feats.mean(0), feats.std(0), feats.max(0)]))
    return np.array(energy), np.array(pooled), listing["label"].to_numpy()


def test_layout_counts_and_balance(dataset):
    root, listing = dataset
    assert list(listing.columns) == LISTING_COLUMNS
    assert len(listing) == N_SEPARABILITY_CLIPS
    on_disk = sorted(str(p) for p in root.glob("*/*/*.avi"))
    assert on_disk == sorted(listing["path"])
    for split in ("train", "val"):
        for cls in ("Fight", "NonFight"):
            assert (root / split / cls).is_dir()
    counts = listing.groupby(["split", "label"]).size()
    assert counts[("train", 1)] + counts[("val", 1)] == counts[("train", 0)] + counts[("val", 0)] == 50
    # val/ holds whole cameras, VAL_FRACTION of them, and so about that share of each class
    cameras = listing.groupby("camera")
    assert cameras["split"].nunique().max() == 1
    val_cameras = (cameras["split"].first() == "val").sum()
    assert val_cameras == round(VAL_FRACTION * cameras.ngroups) == 3
    assert counts[("val", 1)] == counts[("val", 0)] and 0.15 <= counts[("val", 1)] / 50 <= 0.25
    for path, label, split, class_name in listing[["path", "label", "split", "class_name"]].itertuples(index=False):
        parts = Path(path).parts
        assert parts[-3] == split and parts[-2] == class_name == ("Fight" if label == 1 else "NonFight")
    assert set(listing.loc[listing.label == 1, "scenario"]) == set(VIOLENT_SCENARIOS)
    assert set(listing.loc[listing.label == 0, "scenario"]) == set(NONVIOLENT_SCENARIOS)
    # Every scenario appears in validation too, not only in training.
    assert listing.loc[listing.split == "val", "scenario"].nunique() >= 6
    assert listing["width"].between(112, 192).all() and listing["fps"].between(15, 30).all()
    seconds = listing["frames"] / listing["fps"]
    assert seconds.between(1.9, 4.1).all()
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker == {"n_clips": N_SEPARABILITY_CLIPS, "seed": 0, "generator_version": GENERATOR_VERSION}
    assert not (root / ".partial").exists()


def test_clips_come_from_cameras_that_record_both_classes(dataset):
    root, listing = dataset
    cameras = listing.groupby("camera")
    assert cameras.ngroups == 100 // CLIPS_PER_CAMERA
    # a camera fixes frame size and rate, records both classes about equally, and several scenarios
    assert (cameras[["width", "height", "fps"]].nunique() == 1).all().all()
    per_class = listing.groupby(["camera", "label"]).size().unstack()
    assert (per_class.min(axis=1) >= 3).all() and ((per_class[1] - per_class[0]).abs() <= 1).all()
    assert cameras["scenario"].nunique().min() >= 4
    assert listing[["width", "height"]].drop_duplicates().shape[0] >= 3 and listing["fps"].nunique() >= 3
    # groups.csv beside the dataset names each clip's camera: what the audit groups the splits by
    groups = pd.read_csv(root / GROUPS_NAME)
    assert list(groups.columns) == ["clip", "label", "source_group"]
    expected = {
        (str(Path(p).relative_to(root)), int(lab), cam) for p, lab, cam in listing[["path", "label", "camera"]].values
    }
    assert set(map(tuple, groups.values.tolist())) == expected


def test_a_camera_fixes_the_view_every_clip_of_it_shows(dataset):
    """First frames of two clips of one camera differ far less than those of two cameras of the same size."""
    _, listing = dataset

    def first_frame(path):
        cap = cv2.VideoCapture(path)
        ok, frame = cap.read()
        cap.release()
        assert ok, path
        return frame.astype(np.float32)

    same, other = [], []
    for _, rows in listing.groupby(["width", "height"]):
        by_camera = [group["path"].tolist() for _, group in rows.groupby("camera")]
        for paths in by_camera:
            same.append(np.median(np.abs(first_frame(paths[0]) - first_frame(paths[1]))))
        for a, b in zip(by_camera, by_camera[1:], strict=False):
            other.append(np.median(np.abs(first_frame(a[0]) - first_frame(b[0]))))
    assert same and other
    print(
        f"median |difference| of first frames: same camera {np.median(same):.1f}, other camera {np.median(other):.1f}"
    )
    assert np.median(same) * 2 < np.median(other)


def test_files_are_real_readable_videos(dataset):
    _, listing = dataset
    for row in listing.iloc[::7].itertuples(index=False):
        cap = cv2.VideoCapture(row.path)
        assert cap.isOpened(), row.path
        assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == row.width
        assert int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == row.height
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(row.fps)
        cap.release()
        frames = decode_all(row.path)
        assert frames.shape == (row.frames, row.height, row.width, 3)
        # Camera noise and light drift: no two consecutive frames are identical.
        assert (np.abs(np.diff(frames.astype(np.int16), axis=0)).reshape(len(frames) - 1, -1).max(1) > 0).all()


def test_same_seed_same_frames_different_seed_different(tmp_path):
    a = generate_synthetic_dataset(tmp_path / "a", 6, seed=7)
    b = generate_synthetic_dataset(tmp_path / "b", 6, seed=7)
    c = generate_synthetic_dataset(tmp_path / "c", 6, seed=8)
    for pa, pb in zip(a["path"], b["path"], strict=True):
        np.testing.assert_array_equal(decode_all(pa), decode_all(pb))
    differs = [
        decode_all(pa).shape != decode_all(pc).shape or not np.array_equal(decode_all(pa), decode_all(pc))
        for pa, pc in zip(a["path"], c["path"], strict=True)
    ]
    assert all(differs)
    assert a.drop(columns="path").equals(b.drop(columns="path"))


def test_render_clip_is_deterministic_and_validates():
    one = render_clip("brawl", 112, 84, 15, 10, seed=3)
    assert one.shape == (10, 84, 112, 3) and one.dtype == np.uint8
    np.testing.assert_array_equal(one, render_clip("brawl", 112, 84, 15, 10, seed=3))
    assert not np.array_equal(one, render_clip("brawl", 112, 84, 15, 10, seed=4))
    with pytest.raises(ValueError, match="unknown scenario"):
        render_clip("boxing", 112, 84, 15, 10, seed=0)
    with pytest.raises(ValueError, match="n_frames"):
        render_clip("punch", 112, 84, 15, 1, seed=0)


def test_finished_dataset_is_reused_without_rewriting(tmp_path):
    root = tmp_path / "ds"
    first = generate_synthetic_dataset(root, 6, seed=1)
    stamps = {p: os.stat(p).st_mtime_ns for p in first["path"]}
    marker_stamp = os.stat(root / MARKER_NAME).st_mtime_ns
    again = generate_synthetic_dataset(root, 6, seed=1)
    assert again.equals(first)
    assert {p: os.stat(p).st_mtime_ns for p in again["path"]} == stamps
    assert os.stat(root / MARKER_NAME).st_mtime_ns == marker_stamp


def test_other_settings_or_missing_files_regenerate(tmp_path):
    root = tmp_path / "ds"
    generate_synthetic_dataset(root, 6, seed=1)
    # Fewer clips: the clips of the old dataset that are no longer planned go away.
    smaller = generate_synthetic_dataset(root, 4, seed=1)
    assert sorted(str(p) for p in root.glob("*/*/*.avi")) == sorted(smaller["path"])
    assert json.loads((root / MARKER_NAME).read_text())["n_clips"] == 4
    # A deleted clip is rewritten even though the marker matches.
    victim = Path(smaller["path"][0])
    victim.unlink()
    generate_synthetic_dataset(root, 4, seed=1)
    assert victim.is_file() and len(decode_all(victim)) == smaller["frames"][0]


def test_refuses_folders_with_foreign_videos_and_bad_arguments(tmp_path):
    root = tmp_path / "ds"
    (root / "train" / "Fight").mkdir(parents=True)
    (root / "train" / "Fight" / "real_clip.avi").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="did not write"):
        generate_synthetic_dataset(root, 4, seed=0)
    assert (root / "train" / "Fight" / "real_clip.avi").is_file()
    for bad in (1, 0, 2.5, "10", True):
        with pytest.raises(ValueError, match="n_clips"):
            generate_synthetic_dataset(tmp_path / "x", bad)
    with pytest.raises(ValueError, match="seed"):
        generate_synthetic_dataset(tmp_path / "x", 4, seed=-1)


def _threshold_cv_accuracy(values, labels, folds):
    """Accuracy of the best single threshold (either direction) chosen on the training folds."""
    correct = 0
    for train, test in folds.split(values, labels):
        best = (-1.0, 0.0, 1)
        for cut in np.unique(values[train]):
            for sign in (1, -1):
                acc = ((sign * (values[train] - cut) > 0) == labels[train]).mean()
                best = max(best, (acc, cut, sign))
        _, cut, sign = best
        correct += ((sign * (values[test] - cut) > 0) == labels[test]).sum()
    return correct / len(labels)


def test_not_trivial_motion_energy_alone_does_not_separate(clip_measurements):
    energy, _, labels = clip_measurements
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    logistic = make_pipeline(StandardScaler(), LogisticRegression())
    lr_acc = (cross_val_predict(logistic, energy[:, None], labels, cv=folds) == labels).mean()
    threshold_acc = _threshold_cv_accuracy(energy, labels, folds)
    print(f"motion-energy accuracy: logistic {lr_acc:.3f}, best threshold {threshold_acc:.3f}")
    assert lr_acc <= 0.75
    assert threshold_acc <= 0.75
    # Hard negatives move at least as much as fights on average.
    assert energy[labels == 0].mean() >= 0.8 * energy[labels == 1].mean()


def test_learnable_from_motion_structure(clip_measurements):
    _, pooled, labels = clip_measurements
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    predicted = cross_val_predict(model, pooled, labels, cv=folds)
    per_class = [(predicted[labels == c] == c).mean() for c in (0, 1)]
    accuracy = (predicted == labels).mean()
    print(f"flow-feature accuracy {accuracy:.3f}, per class {per_class}")
    assert accuracy >= 0.90
    assert abs(per_class[0] - per_class[1]) <= 0.10
