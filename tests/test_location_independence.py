"""Same seed, same data, same results wherever the data and the outputs lie (issue 23).

A tiny dataset of real clips is written once and copied to another absolute path (same folder name): the audit
gives both the same clip ids, groups and splits, the feature cache the same names, and the seeded augmentation
copies the same bytes, from two cache roots. Caches written under the older, path-based names are carried over
once (renamed, or for augmentation copies drawn from the path, computed again), never silently recomputed.
The whole pipeline from two output roots and two dataset locations: ``test_reproducible_run`` (slow).
"""

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from nexara_lib.audit.manifest import build_manifest
from nexara_lib.features.backbones import weights_identity
from nexara_lib.features.cache import clip_cache_name, load_features, read_clip_records
from nexara_lib.features.cache_entries import sum_path
from nexara_lib.features.cache_migration import (
    describe_legacy,
    legacy_clip_cache_name,
    legacy_stream_dir,
    migrate_legacy_stream_dir,
)
from nexara_lib.features.extract import extract_augmented_copies, extract_features
from nexara_lib.features.stream import FeatureStream
from nexara_lib.run.reproduction import data_digest, reproduction_record
from nexara_lib.video.synthetic import GROUPS_NAME, generate_synthetic_dataset

STREAM = FeatureStream("flow", "none", 5, 48)
OPS = ["hflip", "brightness_contrast", "rotate_zoom", "temporal_jitter"]
SAME_EVERYWHERE = ["clip_id", "rel_path", "source", "label", "split", "split_origin", "group", "sha1", "frames"]


def _write_video(path, n_frames, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
    for i in range(n_frames):
        frame = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        x = (5 + i * (3 + seed)) % 52
        cv2.rectangle(frame, (x, 10 + seed % 20), (x + 10, 30), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()


def _dataset(folder, clips_per_class=5, offset=0):
    for i in range(clips_per_class):
        _write_video(folder / "Fight" / f"fi{i}.avi", 10 + i, offset + 2 * i)
        _write_video(folder / "NonFight" / f"no{i}.avi", 11 + i, offset + 2 * i + 1)
    return folder


def _manifest(*roots):
    manifest, _, _ = build_manifest([str(r) for r in roots], seed=3, workers=0, progress=False)
    return manifest


@pytest.fixture(scope="module")
def two_places(tmp_path_factory):
    """(manifest here, manifest of the same dataset copied to another path) of one tiny class-folder dataset."""
    root = tmp_path_factory.mktemp("places")
    here = _dataset(root / "here" / "clips")
    there = root / "mounted" / "elsewhere" / "clips"
    shutil.copytree(here, there)
    return _manifest(here), _manifest(there)


def test_the_audit_gives_the_same_ids_groups_and_splits_at_another_path(two_places):
    here, there = two_places
    assert not set(here["path"]) & set(there["path"])  # really two places
    pd.testing.assert_frame_equal(here[SAME_EVERYWHERE], there[SAME_EVERYWHERE])
    assert set(here["split"]) == {"train", "val", "test"}


def test_splits_do_not_follow_where_the_roots_lie(tmp_path):
    """Two dataset roots whose order by absolute path differs between the layouts: the same splits."""
    alpha, beta = _dataset(tmp_path / "data" / "alpha", 6, 0), _dataset(tmp_path / "data" / "beta", 6, 100)
    first = _manifest(alpha, beta)
    shutil.copytree(alpha, tmp_path / "z" / "alpha")  # alpha now sorts after beta by path
    shutil.copytree(beta, tmp_path / "a" / "beta")
    second = _manifest(tmp_path / "z" / "alpha", tmp_path / "a" / "beta")
    pd.testing.assert_frame_equal(first[SAME_EVERYWHERE], second[SAME_EVERYWHERE])


def test_cache_names_depend_on_the_clip_and_its_content_not_its_path(two_places):
    here, there = two_places
    names = [clip_cache_name(row) for _, row in here.iterrows()]
    assert names == [clip_cache_name(row) for _, row in there.iterrows()]
    assert len(set(names)) == len(names)
    row = here.iloc[0].to_dict()
    assert clip_cache_name({**row, "frames": float(row["frames"])}) == names[0]  # read back as float: same name
    assert clip_cache_name({**row, "sha1": "0" * 40}) != names[0]  # other bytes: other features
    assert clip_cache_name({**row, "clip_id": "another"}) != names[0]


def test_augmented_copies_are_the_same_from_two_places_and_cache_roots(two_places, tmp_path):
    here, there = two_places
    train = [m[m["split"] == "train"] for m in (here, there)]
    for manifest, root in zip(train, ("a", "b"), strict=True):
        extract_augmented_copies(
            manifest, STREAM, tmp_path / root, copies=2, ops=OPS, seed=7, workers=0, progress=False
        )
    for copy in (1, 2):
        folder = STREAM.augmentation_copy(OPS, copy, 7).key
        files = sorted(p.name for p in (tmp_path / "a" / folder).glob("*.npy"))
        assert files == sorted(p.name for p in (tmp_path / "b" / folder).glob("*.npy")) and len(files) == len(train[0])
        for name in files:
            assert (tmp_path / "a" / folder / name).read_bytes() == (tmp_path / "b" / folder / name).read_bytes()
    clean = extract_features(train[0], STREAM, tmp_path / "a", workers=0, progress=False)
    copy = STREAM.augmentation_copy(OPS, 1, 7)
    x_clean, _, _ = load_features(train[0], clean["cache_dir"])
    x_copy, _, _ = load_features(train[0], copy.cache_dir(tmp_path / "a"))
    assert not np.array_equal(x_clean, x_copy)  # the copies are augmented, not the clean features


def _as_old_version(cache_dir, manifest):
    """Rename every entry of ``cache_dir`` (and its read record) to the older, path-based name."""
    legacy = {clip_cache_name(row): legacy_clip_cache_name(row) for _, row in manifest.iterrows()}
    for new, old in legacy.items():
        os.replace(sum_path(cache_dir / new), sum_path(cache_dir / old))
        os.replace(cache_dir / new, cache_dir / old)
    log = cache_dir / "clips.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text("".join(json.dumps({**r, "file": legacy[r["file"]]}) + "\n" for r in lines))
    return legacy


def test_a_cache_under_the_old_names_is_renamed_once_not_recomputed(two_places, tmp_path):
    manifest = two_places[0]
    first = extract_features(manifest, STREAM, tmp_path, workers=0, progress=False)
    x, y, ids = load_features(manifest, first["cache_dir"])
    cache_dir = STREAM.cache_dir(tmp_path)
    legacy = _as_old_version(cache_dir, manifest)
    with pytest.raises(ValueError, match="no cached features"):
        load_features(manifest, cache_dir)  # the new names are not there yet

    again = extract_features(manifest, STREAM, tmp_path, workers=0, progress=False)
    assert again["computed"] == 0 and again["cached_before"] == len(manifest)
    assert again["legacy"]["renamed"]["count"] == len(manifest) and again["legacy"]["recomputed"]["count"] == 0
    assert "absolute path" in again["legacy"]["renamed"]["reason"]
    assert "renamed" in describe_legacy(again) and str(tmp_path) not in describe_legacy(again)
    x2, y2, ids2 = load_features(manifest, cache_dir)
    assert np.array_equal(x, x2) and ids == ids2
    assert sorted(read_clip_records(cache_dir)["file"]) == sorted(legacy)  # read records follow the entries
    assert not any((cache_dir / old).exists() for old in legacy.values())

    third = extract_features(manifest, STREAM, tmp_path, workers=0, progress=False)
    assert third["legacy"]["renamed"]["count"] == 0 and describe_legacy(third) is None  # once


def test_old_augmented_copies_are_drawn_again_and_kept_aside(two_places, tmp_path):
    train = two_places[0][two_places[0]["split"] == "train"]
    extract_augmented_copies(train, STREAM, tmp_path / "fresh", copies=1, ops=OPS, seed=7, workers=0, progress=False)
    copy = STREAM.augmentation_copy(OPS, 1, 7)
    extract_augmented_copies(train, STREAM, tmp_path / "old", copies=1, ops=OPS, seed=7, workers=0, progress=False)
    _as_old_version(copy.cache_dir(tmp_path / "old"), train)

    (again,) = extract_augmented_copies(
        train, STREAM, tmp_path / "old", copies=1, ops=OPS, seed=7, workers=0, progress=False
    )
    assert again["computed"] == len(train) and again["legacy"]["recomputed"]["count"] == len(train)
    assert "augmented copies were computed again" in describe_legacy(again)
    assert len(list((copy.cache_dir(tmp_path / "old") / "bad").glob("*.npy"))) == len(train)
    for name in (clip_cache_name(row) for _, row in train.iterrows()):
        fresh = (copy.cache_dir(tmp_path / "fresh") / name).read_bytes()
        assert (copy.cache_dir(tmp_path / "old") / name).read_bytes() == fresh


def test_an_old_cache_of_a_dataset_that_moved_is_recomputed_and_said(two_places, tmp_path):
    here, there = two_places
    extract_features(here, STREAM, tmp_path, workers=0, progress=False)
    _as_old_version(STREAM.cache_dir(tmp_path), here)  # names hashed from the first place's paths
    moved = extract_features(there, STREAM, tmp_path, workers=0, progress=False)
    assert moved["computed"] == len(there) and moved["legacy"]["unmatched"]["count"] == len(there)
    assert "location the data no longer has" in describe_legacy(moved)


def test_weights_files_are_known_by_their_bytes_not_their_place_or_time(tmp_path):
    first = tmp_path / "a" / "encoder.weights.h5"
    first.parent.mkdir()
    first.write_bytes(b"weights" * 100)
    second = tmp_path / "b" / "encoder.weights.h5"
    second.parent.mkdir()
    shutil.copy(first, second)
    os.utime(second, (1_000_000_000, 1_000_000_000))
    assert weights_identity(str(first)) == weights_identity(str(second))
    second.write_bytes(b"other!!" * 100)
    assert weights_identity(str(first)) != weights_identity(str(second))


def test_a_stream_folder_keyed_by_the_weights_modification_time_is_renamed(tmp_path):
    weights = tmp_path / "encoder.weights.h5"
    weights.write_bytes(b"weights" * 100)
    stream = FeatureStream("mobilenetv2", str(weights), 4, 32)
    old = legacy_stream_dir(stream, tmp_path / "features")
    assert old is not None and old.name.startswith(f"mobilenetv2-encoder.weights-700-{int(weights.stat().st_mtime)}-")
    old.mkdir(parents=True)
    (old / "kept.npy").write_bytes(b"x")
    assert migrate_legacy_stream_dir(stream, tmp_path / "features") == old.name
    assert (stream.cache_dir(tmp_path / "features") / "kept.npy").exists() and not old.exists()
    assert migrate_legacy_stream_dir(stream, tmp_path / "features") is None  # once


def test_the_reproduction_record_keeps_locations_apart_from_what_feeds_results(two_places, tmp_path):
    here, there = two_places
    assert data_digest(here) == data_digest(there)
    moved_split = here.assign(split=np.where(here["split"] == "val", "train", here["split"]))
    assert data_digest(moved_split) != data_digest(here)
    (tmp_path / "run" / "artifacts").mkdir(parents=True)
    here.to_csv(tmp_path / "run" / "artifacts" / "manifest.csv", index=False)
    params = {"seed": 42, "output_root": str(tmp_path), "data_dir": [str(tmp_path / "here")], "model": "hybrid"}
    record = reproduction_record(params, tmp_path / "run")
    assert record["params"] == {"seed": 42, "model": "hybrid"}
    assert record["location"]["data_dir"] == params["data_dir"] and record["location"]["output_root"] == str(tmp_path)
    assert record["data"] == {"clips": len(here), "clips_per_source": {"clips": len(here)}, "digest": data_digest(here)}
    assert reproduction_record(params, tmp_path / "no-run")["data"] is None


def test_the_synthetic_dataset_is_the_same_bytes_under_any_output_root(tmp_path):
    a = generate_synthetic_dataset(tmp_path / "a" / "_synthetic" / "n4-seed3", 4, seed=3)
    b = generate_synthetic_dataset(tmp_path / "b" / "deeper" / "_synthetic" / "n4-seed3", 4, seed=3)
    for pa, pb in zip(a["path"], b["path"], strict=True):
        assert Path(pa).read_bytes() == Path(pb).read_bytes()
    groups = [root / "_synthetic" / "n4-seed3" / GROUPS_NAME for root in (tmp_path / "a", tmp_path / "b" / "deeper")]
    assert groups[0].read_bytes() == groups[1].read_bytes()
