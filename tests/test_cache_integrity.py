"""The feature cache is not trusted because a file exists (issue #15, fault 2).

Every way a clip's cached ``.npy`` can go bad (cut short, overwritten with random bytes, finite
garbage behind a valid header, no checksum file, checksum file disagreeing on shape or dtype, a
well-formed array of the wrong T) is found by extraction, moved aside, computed again to exactly
the numbers of a clean extraction and counted in the summary; loading it first raises a
``CacheEntryError`` that names the file and says how to fix it. Real videos, the weight-free
``flow`` backbone.
"""

import hashlib
import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from nexara_lib.features.cache import CacheEntryError, clip_cache_name, load_features, read_features
from nexara_lib.features.cache_entries import read_entry, sum_path, write_entry
from nexara_lib.features.extract import extract_features
from nexara_lib.features.stream import FeatureStream
from nexara_lib.io import to_jsonable

STREAM = FeatureStream("flow", "none", 5, 48)
VICTIM = 1  # the manifest row whose entry is damaged


def _write_video(path, n_frames, seed):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
    for i in range(n_frames):
        frame = rng.integers(0, 40, (48, 64, 3), dtype=np.uint8)
        x = (5 + i * (3 + seed)) % 52
        cv2.rectangle(frame, (x, 10), (x + 10, 30), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """(manifest, cache root of a clean extraction, its features) shared by the tests (they copy the root)."""
    root = tmp_path_factory.mktemp("clean")
    manifest = pd.DataFrame(
        [
            {
                "clip_id": f"c{i}",
                "path": str(_write_video(root / f"c{i}.avi", 10 + i, i)),
                "label": i % 2,
                "frames": 10 + i,
            }
            for i in range(3)
        ]
    )
    summary = extract_features(manifest, STREAM, root / "features", workers=0, progress=False)
    assert summary["computed"] == 3 and summary["bad_entries"] == []
    x, y, ids = load_features(manifest, summary["cache_dir"])
    return manifest, root / "features", x


@pytest.fixture
def cache(clean, tmp_path):
    """A private copy of the clean cache: (manifest, cache root, cache dir, reference features, victim path)."""
    manifest, root, x = clean
    copy = tmp_path / "features"
    shutil.copytree(root, copy)
    cache_dir = STREAM.cache_dir(copy)
    return manifest, copy, cache_dir, x, cache_dir / clip_cache_name(manifest.iloc[VICTIM])


def _edit_sum(path, **changes):
    where = sum_path(path)
    where.write_text(json.dumps({**json.loads(where.read_text()), **changes}))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _finite_garbage(path):
    shape = np.load(path).shape
    np.save(path, np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float16))  # valid header, same shape


def _no_checksum_file(path):
    sum_path(path).unlink()  # also what a cache written before checksums looks like


def _legacy_garbage(path):
    np.save(path, np.zeros(np.load(path).shape, dtype=np.float16))
    sum_path(path).unlink()


def _sum_says_other_shape(path):
    _edit_sum(path, shape=[5, 3])


def _sum_says_other_dtype(path):
    _edit_sum(path, dtype="<f4")


def _well_formed_wrong_t(path):
    write_entry(path, np.zeros((7, np.load(path).shape[1]), dtype=np.float16))  # checksum fine, T wrong


DAMAGE = {  # how -> (damage, what the reason says)
    "truncated": (_truncate, "truncated: "),
    "random_bytes": (_random_bytes, "checksum mismatch"),
    "finite_garbage": (_finite_garbage, "checksum mismatch"),
    "no_checksum_file": (_no_checksum_file, "checksum file"),
    "legacy_garbage": (_legacy_garbage, "is missing"),
    "sum_shape": (_sum_says_other_shape, "wrong shape or dtype"),
    "sum_dtype": (_sum_says_other_dtype, "wrong shape or dtype"),
    "wrong_t": (_well_formed_wrong_t, "7 frames"),
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_a_bad_entry_is_named_on_load_then_moved_aside_recomputed_and_counted(cache, how):
    manifest, root, cache_dir, reference, victim = cache
    damage, says = DAMAGE[how]
    damage(victim)

    # Loading (notebook 03 on) never uses it and never drops the clip silently: it names the file and the fix.
    with pytest.raises(CacheEntryError) as caught:
        STREAM.load(manifest, root)
    message = str(caught.value)
    assert str(victim) in message and says in message and caught.value.path == victim
    assert "notebook 02" in message and "nexara extract" in message
    assert "allow_pickle" not in message and "pickle" not in message.lower()

    # Extraction finds it, moves it aside, computes it again and counts it.
    again = extract_features(manifest, STREAM, root, workers=0, progress=False)
    assert again["computed"] == 1 and again["cached_before"] == 2 and again["failed"] == []
    assert len(again["bad_entries"]) == 1
    entry = again["bad_entries"][0]
    assert entry["file"] == victim.name and entry["clip_id"] == manifest.iloc[VICTIM]["clip_id"]
    assert says in entry["reason"]
    moved = cache_dir / entry["moved_to"]
    assert moved.parent == cache_dir / "bad" and moved.is_file()
    assert json.loads(json.dumps(to_jsonable(again)))["bad_entries"] == [entry]  # as extraction.json holds it
    logged = [json.loads(line) for line in (cache_dir / "bad" / "moved.jsonl").read_text().splitlines()]
    assert [(r["file"], r["moved_to"]) for r in logged] == [(victim.name, moved.name)]

    x, _, ids = load_features(manifest, cache_dir)
    assert ids == ["c0", "c1", "c2"] and np.array_equal(x, reference)  # exactly a clean extraction
    assert np.array_equal(STREAM.load(manifest, root)[0], reference)
    third = extract_features(manifest, STREAM, root, workers=0, progress=False)
    assert third["bad_entries"] == [] and third["computed"] == 0 and third["cached_before"] == 3


def test_the_same_entry_going_bad_twice_keeps_both_copies(cache):
    manifest, root, cache_dir, reference, victim = cache
    for _ in range(2):
        _finite_garbage(victim)
        assert len(extract_features(manifest, STREAM, root, workers=0, progress=False)["bad_entries"]) == 1
    kept = sorted(p.name for p in (cache_dir / "bad").glob("*.npy"))
    assert len(kept) == 2 and all(sum_path(cache_dir / "bad" / name).is_file() for name in kept)
    assert np.array_equal(load_features(manifest, cache_dir)[0], reference)


def test_a_crash_before_the_npy_landed_is_just_not_cached(cache):
    """The checksum file is written first, the .npy last: a crash in between leaves a clip that is not cached."""
    manifest, root, cache_dir, reference, victim = cache
    victim.unlink()  # the checksum file stays, as after a kill between the two writes
    again = extract_features(manifest, STREAM, root, workers=0, progress=False)
    assert again["computed"] == 1 and again["bad_entries"] == [] and not (cache_dir / "bad").exists()
    assert np.array_equal(load_features(manifest, cache_dir)[0], reference)


def test_a_crash_after_the_npy_before_its_checksum_is_recomputed(cache):
    """Written the other way round (or by an older version), an .npy without its checksum file is not trusted."""
    manifest, root, cache_dir, reference, victim = cache
    sum_path(victim).unlink()
    again = extract_features(manifest, STREAM, root, workers=0, progress=False)
    assert again["computed"] == 1 and [e["file"] for e in again["bad_entries"]] == [victim.name]
    assert np.array_equal(load_features(manifest, cache_dir)[0], reference)


def test_every_entry_has_its_checksum_file_and_reads_back_as_written(clean):
    manifest, root, reference = clean
    cache_dir = STREAM.cache_dir(root)
    for i, (_, row) in enumerate(manifest.iterrows()):
        path = cache_dir / clip_cache_name(row)
        meta = json.loads(sum_path(path).read_text())
        assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert meta["bytes"] == path.stat().st_size and meta["shape"] == [5, STREAM.cached_dim]
        assert np.dtype(meta["dtype"]) == np.float16
        assert np.array_equal(read_features(path, 5), np.load(path)) and np.array_equal(
            read_entry(path).astype(np.float32), reference[i]
        )


class _Boom:
    """Unpickling this creates a folder: the proof that a reader unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_an_object_array_is_refused_without_unpickling(tmp_path):
    path, marker = tmp_path / "evil.npy", tmp_path / "unpickled"
    np.save(path, np.array([_Boom(str(marker))], dtype=object), allow_pickle=True)
    data = path.read_bytes()
    sum_path(path).write_text(
        json.dumps(
            {"format": 1, "shape": [1], "dtype": "<f2", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    )
    with pytest.raises(CacheEntryError, match="Python objects") as caught:
        read_entry(path)
    assert not marker.exists() and "allow_pickle" not in str(caught.value)
    with pytest.raises(TypeError, match="Python objects"):
        write_entry(tmp_path / "objects.npy", np.array([{}], dtype=object))


def test_a_cut_short_checksum_file_is_named(tmp_path):
    path = write_entry(tmp_path / "a.npy", np.ones((2, 3), dtype=np.float16))
    assert np.array_equal(read_entry(path), np.ones((2, 3))) and not read_entry(path).flags.writeable
    sum_path(path).write_text('{"format": 1, "sha')
    with pytest.raises(CacheEntryError, match="a.npy.sum is unreadable") as caught:
        read_entry(path)
    assert str(path) in str(caught.value) and isinstance(caught.value, ValueError)
