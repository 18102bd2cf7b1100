"""The audit on messy, real-world input: every test builds the bad file it needs.

Each bad input must end up either in the manifest (usable, maybe with a
warning) or in unusable.csv with a reason a person can act on, and the audit
must finish. Clips are tiny so the whole file runs in seconds.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from video_utils import decode_all

from nexara_lib.audit.discover import discover_clips
from nexara_lib.audit.duplicates import PHASH_MAX_DISTANCE, find_duplicates
from nexara_lib.audit.figures import frame_grid_figure
from nexara_lib.audit.manifest import build_manifest, write_audit
from nexara_lib.audit.probe_pool import probe_clips
from nexara_lib.video.probe import phash_distance, probe_video

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "surv-fight-dev"
_seeds = iter(range(1000, 1_000_000))


# --------------------------------------------------------------------------- builders


def look(seed, size=(96, 72), n_frames=10):
    """Frames of a clip with its own look: a smooth random texture and a box moving over it.

    Smooth (not per-pixel noise), so the downscaled frames a perceptual hash sees
    differ between seeds but survive re-encoding.
    """
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), size, interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n_frames):
        frame = base.copy()
        x = (i * size[0] // n_frames) % (size[0] - 16)
        cv2.rectangle(frame, (x, size[1] // 3), (x + 16, size[1] // 3 + 16), (255, 255, 255), -1)
        frames.append(frame)
    return frames


def write_frames(path, frames, fps=10.0, fourcc=None, is_color=True, quality=None):
    """Write BGR (or grey) frames with OpenCV; MJPG for .avi, mp4v otherwise unless ``fourcc`` says."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = fourcc or ("MJPG" if path.suffix == ".avi" else "mp4v")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height), is_color)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    if quality is not None:
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_clip(path, n_frames=10, size=(96, 72), seed=None):
    return write_frames(path, look(next(_seeds) if seed is None else seed, size, n_frames))


def reencode(src, dst, fourcc, scale=1.0, quality=None):
    """The same frames written again with another codec, size or JPEG quality: new bytes, same content."""
    frames = list(decode_all(src, rgb=False))
    if scale != 1.0:
        size = (int(frames[0].shape[1] * scale) // 2 * 2, int(frames[0].shape[0] * scale) // 2 * 2)
        frames = [cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames]
    return write_frames(dst, frames, fourcc=fourcc, quality=quality)


def write_truncated_mp4(path):
    """An MP4 cut at 60 %: the index ('moov' box) that OpenCV's writer puts at the end is gone."""
    full = write_clip(Path(path).with_suffix(".full.mp4"), n_frames=20)
    data = full.read_bytes()
    full.unlink()
    Path(path).write_bytes(data[: int(len(data) * 0.6)])
    return Path(path)


def write_png_as_video(path):
    ok, png = cv2.imencode(".png", look(next(_seeds))[0])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png.tobytes())
    return Path(path)


def write_grey_clip(path, n_frames=6):
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in look(next(_seeds), n_frames=n_frames)]
    return write_frames(path, frames, is_color=False)


def write_vfr_mkv(path, ticks=(1,) * 10 + (3,) * 10, fps=10.0):
    """A true variable-frame-rate Matroska clip: MJPEG packets muxed with chosen timestamps.

    OpenCV's FFmpeg writer in raw mode stores already-encoded packets and takes
    each one's presentation time (in 1/fps ticks) from VIDEOWRITER_PROP_PTS, so
    no ffmpeg binary is needed. Default: 10 frames 0.1 s apart, then 10 frames
    0.3 s apart (4.0 s in all, where 20 frames at the header's 10 fps last 2.0 s).
    """
    frames = look(next(_seeds), n_frames=len(ticks))
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(
        str(path),
        cv2.CAP_FFMPEG,
        cv2.VideoWriter_fourcc(*"MJPG"),
        fps,
        (width, height),
        [cv2.VIDEOWRITER_PROP_RAW_VIDEO, 1],
    )
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot mux raw packets (VIDEOWRITER_PROP_RAW_VIDEO), so no VFR clip")
    pts = 0
    for frame, tick in zip(frames, ticks, strict=True):
        ok, jpeg = cv2.imencode(".jpg", frame)
        writer.set(cv2.VIDEOWRITER_PROP_PTS, pts)
        writer.write(jpeg.reshape(1, -1))
        pts += tick
    writer.release()
    return Path(path)


def patch_avi_frame_count(path, frames):
    """Rewrite the frame count an AVI claims: avih.dwTotalFrames and the video stream's strh.dwLength."""
    data = bytearray(Path(path).read_bytes())
    for tag, offset in ((b"avih", 16), (b"strh", 32)):  # field offsets inside each chunk's data
        at = data.find(tag)
        assert at >= 0, f"{path} has no {tag!r} chunk"
        struct.pack_into("<I", data, at + 8 + offset, frames)
    Path(path).write_bytes(bytes(data))
    return Path(path)


LONG_NAME = "fi long name with spaces 'single' \"double\" " + "ünïcödé clip " * 12 + "end.avi"
SCRIPT_NAME = "<script>alert('x')<script> & co.avi"


def reasons_of(unusable):
    return dict(zip(unusable["rel_path"], unusable["reason"], strict=True))


def audit_of(root, **kwargs):
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("progress", False)
    return build_manifest([root], **kwargs)


def class_tree(root, fight=3, no_fight=3):
    """fight/ and noFight/ folders with distinct small clips (enough groups for three splits)."""
    for i in range(fight):
        write_clip(Path(root) / "fight" / f"fi{i}.avi")
    for i in range(no_fight):
        write_clip(Path(root) / "noFight" / f"no{i}.avi")
    return Path(root)


# --------------------------------------------------------------------------- one bad input at a time


def test_unreadable_files_are_listed_with_what_they_really_are(tmp_path):
    root = class_tree(tmp_path / "d")
    (root / "fight" / "zero.mp4").write_bytes(b"")
    write_truncated_mp4(root / "fight" / "truncated.mp4")
    (root / "noFight" / "notes.avi").write_text("clip list, see the wiki\n" * 30)
    (root / "noFight" / "page.mp4").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    write_png_as_video(root / "noFight" / "picture.mp4")
    write_clip(root / "fight" / "one_frame.avi", n_frames=1)

    manifest, unusable, summary = audit_of(root)
    reasons = reasons_of(unusable)
    assert reasons["fight/zero.mp4"] == "file is empty (0 bytes)"
    assert "truncated MP4" in reasons["fight/truncated.mp4"] and "'mdat' box" in reasons["fight/truncated.mp4"]
    assert reasons["noFight/notes.avi"].startswith("not a video: the file is a text file with a .avi suffix")
    assert "an HTML page" in reasons["noFight/page.mp4"]
    assert reasons["noFight/picture.mp4"].startswith("not a video: the file is a PNG image with a .mp4 suffix")
    assert reasons["fight/one_frame.avi"] == "only 1 decodable frame (need at least 2)"
    assert len(reasons) == 6 and summary["clips_unusable"] == 6
    assert sorted(manifest["rel_path"]) == [f"fight/fi{i}.avi" for i in range(3)] + [
        f"noFight/no{i}.avi" for i in range(3)
    ]


def test_grey_4k_and_long_clips_are_usable_and_described(tmp_path):
    grey = write_grey_clip(tmp_path / "grey.avi")
    k4 = write_frames(tmp_path / "k4.avi", [cv2.resize(f, (3840, 2160)) for f in look(7, n_frames=4)])
    grey_info, k4_info = probe_video(grey), probe_video(k4)
    assert grey_info["status"] == "ok" and grey_info["frames"] == 6 and grey_info["first_frame_ok"]
    assert "grey frames" in grey_info["warnings"]
    assert (k4_info["width"], k4_info["height"], k4_info["frames"]) == (3840, 2160, 4)
    assert k4_info["status"] == "ok" and k4_info["last_frame_ok"] and k4_info["warnings"] == ""
    assert phash_distance(k4_info["phash"], probe_video(write_clip(tmp_path / "small.avi", seed=7))["phash"]) < 0.1


def test_variable_frame_rate_clip_gets_its_real_duration(tmp_path):
    info = probe_video(write_vfr_mkv(tmp_path / "vfr.mkv"))
    assert info["status"] == "ok" and info["frames"] == 20 and info["fps"] == pytest.approx(10.0)
    # Matroska has no frame count: OpenCV estimates it from duration x fps, which VFR breaks.
    assert info["frames_header"] != 20 and "header claims" in info["warnings"]
    assert "variable or wrong frame rate" in info["warnings"]
    # Timestamps say 4.0 s (estimated from the mean frame spacing: 3.9 s); frames / fps would say 2.0 s.
    assert 3.6 < info["duration_s"] < 4.2
    assert info["first_frame_ok"] and info["last_frame_ok"]


@pytest.mark.parametrize("claimed", [60, 12])
def test_wrong_header_frame_count_is_replaced_by_the_verified_count(tmp_path, claimed):
    clip = patch_avi_frame_count(write_clip(tmp_path / "c.avi", n_frames=20), claimed)
    assert cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT) == claimed  # the patch took
    info = probe_video(clip)
    assert info["frames_header"] == claimed and info["frames"] == 20
    assert info["status"] == "ok" and info["last_frame_ok"]
    assert f"header claims {claimed} frames but 20 decode" in info["warnings"]
    assert info["duration_s"] == pytest.approx(2.0)


def test_odd_names_survive_the_audit_and_its_files(tmp_path):
    assert 200 <= len(LONG_NAME.encode("utf-8")) <= 255  # long, but a name Linux accepts
    root = class_tree(tmp_path / "d", fight=2, no_fight=3)
    write_clip(root / "fight" / LONG_NAME)
    write_clip(root / "fight" / SCRIPT_NAME)
    manifest, unusable, summary = audit_of(root)
    assert unusable.empty
    assert {f"fight/{LONG_NAME}", f"fight/{SCRIPT_NAME}"} <= set(manifest["rel_path"])
    assert manifest["clip_id"].is_unique
    assert not manifest["clip_id"].str.contains(r"[^A-Za-z0-9._-]").any()

    paths = write_audit(manifest, unusable, summary, tmp_path / "out")
    back = pd.read_csv(paths["manifest"], keep_default_na=False)
    assert list(back["path"]) == list(manifest["path"])  # quotes, spaces and non-ASCII round-trip
    grid = frame_grid_figure(manifest, per_class=4, frames=2)
    titles = [ax.get_title(loc="left") for ax in grid.axes]
    assert any(SCRIPT_NAME in t for t in titles)
    grid.savefig(tmp_path / "grid.png")


def test_directory_symlink_loops_are_skipped_without_mislabelling(tmp_path):
    root = class_tree(tmp_path / "d", fight=2, no_fight=2)
    os.symlink(root, root / "fight" / "to_root")  # a loop through the root: noFight/ would turn "fight"
    os.symlink(root / "noFight", root / "noFight" / "to_self")
    os.symlink("missing_target.avi", root / "fight" / "dangling.avi")
    clips = discover_clips([root])
    assert dict(zip(clips["rel_path"], clips["label"], strict=True)) == {
        "fight/dangling.avi": 1,
        "fight/fi0.avi": 1,
        "fight/fi1.avi": 1,
        "noFight/no0.avi": 0,
        "noFight/no1.avi": 0,
    }
    skipped = [n for n in clips.attrs["notes"] if "skipped folder link" in n]
    assert len(skipped) == 2 and any("to_root" in n for n in skipped) and any("to_self" in n for n in skipped)
    probed = probe_clips(clips, workers=0, progress=False)
    dangling = probed.set_index("rel_path").loc["fight/dangling.avi"]
    assert dangling["status"] == "unusable" and dangling["reason"].startswith("broken symbolic link")


def test_empty_class_folder_is_reported_and_the_audit_finishes(tmp_path):
    root = tmp_path / "d"
    for i in range(4):
        write_clip(root / "fight" / f"fi{i}.avi")
    (root / "noFight").mkdir()
    with pytest.warns(UserWarning, match="only one class is usable: no non-violent clips"):
        manifest, unusable, summary = audit_of(root)
    assert len(manifest) == 4 and unusable.empty
    assert any("class folder 'noFight' holds no video files" in n for n in summary["notes"])
    assert summary["imbalance_ratio"] is None


def test_same_clip_in_train_and_test_is_flagged_as_leakage(tmp_path):
    root = tmp_path / "d"
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("fight", "noFight"):
            for i in range(n):
                write_clip(root / split / cls / f"{cls}{i}.avi")
    shutil.copy(root / "train/fight/fight0.avi", root / "test/fight/copy.avi")
    with pytest.warns(UserWarning, match="leakage"):
        manifest, _, summary = audit_of(root)
    leaked = manifest[manifest["leakage"]]
    assert sorted(leaked["rel_path"]) == ["test/fight/copy.avi", "train/fight/fight0.avi"]
    [item] = summary["leakage"]["items"]
    assert item["kind"] == "exact" and item["splits"] == ["test", "train"]
    assert {c["clip"]: c["split"] for c in item["clips"]} == {
        "d/test/fight/copy.avi": "test",
        "d/train/fight/fight0.avi": "train",
    }
    [cluster] = summary["duplicates"]["list"]
    assert cluster["kind"] == "exact" and not cluster["same_split"]
    assert summary["duplicates"]["across_splits"] == 1
    # Validation was carved from train (the dataset has train and test only), never from the leak.
    assert set(manifest.loc[manifest["split"] == "val", "split_origin"]) == {"carved"}


def test_nothing_usable_is_a_clear_error(tmp_path):
    root = tmp_path / "d"
    (root / "fight").mkdir(parents=True)
    (root / "fight" / "zero.avi").write_bytes(b"")
    write_png_as_video(root / "noFight" / "picture.avi")
    with pytest.raises(ValueError, match=r"none of the 2 clips .* is usable; most common reasons: .*PNG image"):
        audit_of(root)


# --------------------------------------------------------------------------- perceptual duplicates


def test_reencoded_copies_are_perceptual_duplicates_and_share_a_split(tmp_path):
    root = class_tree(tmp_path / "d", fight=4, no_fight=4)
    original = root / "fight" / "fi0.avi"
    reencode(original, root / "fight" / "copy_mp4v.mp4", "mp4v")
    reencode(original, root / "fight" / "copy_small_q30.avi", "MJPG", scale=0.75, quality=30)
    reencode(original, root / "noFight" / "copy_half.mp4", "mp4v", scale=0.5)  # mislabelled, too
    with pytest.warns(UserWarning, match="different labels"):
        manifest, _, summary = audit_of(root)
    rows = manifest.set_index("rel_path")
    copies = ["fight/copy_mp4v.mp4", "fight/copy_small_q30.avi", "noFight/copy_half.mp4"]
    cluster = rows.loc["fight/fi0.avi", "dup_cluster"]
    assert cluster and (rows.loc[copies, "dup_cluster"] == cluster).all()
    assert (rows.loc[copies, "duplicate_kind"] == "perceptual").all()
    assert (rows.loc[copies, "duplicate_of"] == "d/fight/fi0.avi").all()
    assert rows.loc[[*copies, "fight/fi0.avi"], "split"].nunique() == 1
    assert rows.loc[[*copies, "fight/fi0.avi"], "group"].nunique() == 1
    assert int(rows["duplicate"].sum()) == 4  # different clips are not duplicates
    [entry] = summary["duplicates"]["list"]
    assert entry["kind"] == "perceptual" and entry["same_split"] and entry["labels_disagree"]
    assert all(p["distance"] <= PHASH_MAX_DISTANCE for p in entry["pairs"])
    assert summary["duplicates"]["label_conflicts"] == [cluster]
    others = [h for r, h in rows["phash"].items() if r.startswith(("fight/fi", "noFight/no")) and r != "fight/fi0.avi"]
    assert min(phash_distance(rows.loc["fight/fi0.avi", "phash"], h) for h in others) > 0.2


def test_reencoded_copy_across_dataset_splits_is_perceptual_leakage(tmp_path):
    root = tmp_path / "d"
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        for cls in ("Violence", "NonViolence"):
            for i in range(n):
                write_clip(root / split / cls / f"{cls}{i}.avi")
    reencode(root / "train/Violence/Violence0.avi", root / "test/Violence/again.mp4", "mp4v", scale=0.75)
    with pytest.warns(UserWarning, match="leakage"):
        manifest, _, summary = audit_of(root)
    [item] = summary["leakage"]["items"]
    assert item["kind"] == "perceptual"
    assert {c["clip"] for c in item["clips"]} == {"d/train/Violence/Violence0.avi", "d/test/Violence/again.mp4"}


def test_flat_frames_are_not_hashed_so_black_clips_do_not_match(tmp_path):
    black = [np.zeros((48, 64, 3), np.uint8)] * 6
    first = probe_video(write_frames(tmp_path / "a.avi", black))
    second = probe_video(write_frames(tmp_path / "b.mp4", black))
    assert first["phash"] == "-:-:-:-" and first["status"] == "ok"
    assert np.isnan(phash_distance(first["phash"], second["phash"]))


def test_phash_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="not a phash"):
        phash_distance("xyz:-", "00:00")
    with pytest.raises(ValueError, match="phash string"):
        phash_distance(None, "")
    with pytest.raises(ValueError, match="max_distance"):
        find_duplicates(pd.DataFrame({"path": [], "source": [], "rel_path": []}), max_distance=0.7)


# --------------------------------------------------------------------------- hangs and crashes


def misbehaving_probe(path):
    """probe_video, except that it hangs on files named *hang* and crashes on *crash* (like a bad decoder)."""
    name = os.path.basename(path)
    if "hang" in name:
        time.sleep(120)
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    return probe_video(path)


def test_a_hanging_or_crashing_probe_costs_only_its_clip(tmp_path):
    root = class_tree(tmp_path / "d", fight=3, no_fight=3)
    write_clip(root / "fight" / "hang.avi")
    write_clip(root / "noFight" / "crash.avi")
    start = time.monotonic()
    manifest, unusable, summary = audit_of(root, workers=2, probe_timeout_s=1.5, probe_fn=misbehaving_probe)
    assert time.monotonic() - start < 60  # the hang (120 s) was cut short
    reasons = reasons_of(unusable)
    assert reasons["fight/hang.avi"].startswith("probe timed out after 1.5 s")
    assert reasons["noFight/crash.avi"].startswith("the decoder crashed on this file")
    assert "SIGSEGV" in reasons["noFight/crash.avi"]
    assert len(manifest) == 6 and (manifest["status"] == "ok").all()
    assert summary["probe_timeouts"] == 1 and summary["probe_crashes"] == 1 and summary["probe_timeout_s"] == 1.5


def test_probe_options_are_checked():
    clips = pd.DataFrame({"path": ["a.avi"]})
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        probe_clips(clips, workers=-1)
    with pytest.raises(ValueError, match="probe_timeout_s must be a positive number"):
        probe_clips(clips, probe_timeout_s=0)
    with pytest.raises(ValueError, match="cannot be sent to worker processes"):
        probe_clips(clips, workers=1, probe_fn=lambda p: {})


def test_workers_that_cannot_start_fall_back_to_this_process(tmp_path):
    clip = write_clip(tmp_path / "c.avi")
    script = tmp_path / "unguarded.py"
    # No `if __name__ == "__main__":` guard: spawned workers re-run the script and die.
    script.write_text(
        "import sys\nimport pandas as pd\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from nexara_lib.audit.probe_pool import probe_clips\n"
        f"out = probe_clips(pd.DataFrame({{'path': [{str(clip)!r}]}}), workers=1, progress=False)\n"
        "print('STATUS', out['status'].iloc[0])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "STATUS ok" in done.stdout
    assert "probing the remaining 1 clips in this process" in done.stderr


# --------------------------------------------------------------------------- bounded work


class CountingCapture:
    """cv2.VideoCapture that counts the frames decoded (grab or read) across all instances."""

    decoded = 0

    def __init__(self, *args):
        self._cap = ORIGINAL_CAPTURE(*args)

    def grab(self):
        CountingCapture.decoded += 1
        return self._cap.grab()

    def read(self):
        CountingCapture.decoded += 1
        return self._cap.read()

    def __getattr__(self, name):
        return getattr(self._cap, name)


ORIGINAL_CAPTURE = cv2.VideoCapture


def test_probe_of_a_long_clip_with_a_right_header_decodes_only_a_few_frames(tmp_path, monkeypatch):
    clip = write_frames(tmp_path / "long.avi", look(3, size=(32, 24), n_frames=600))
    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)
    info = probe_video(clip)
    assert info["status"] == "ok" and info["frames"] == 600 and info["last_frame_ok"]
    # First frame, 4 hashed frames, the last 4 and one grab past the end; not 600.
    assert CountingCapture.decoded <= 12


# --------------------------------------------------------------------------- everything at once


def real_clips(per_class=3):
    """Real clips from distinct source recordings (so none of them is a duplicate of another)."""
    table = pd.read_csv(REAL_DATA / "groups.csv").drop_duplicates("source_group")
    picks = []
    for label in ("fight", "noFight"):
        rows = table[table["clip"].str.startswith(label + "/")].head(per_class)
        picks.extend(REAL_DATA / c for c in rows["clip"])
    return picks


@pytest.mark.realdata
def test_a_dataset_with_every_problem_audits_to_completion(tmp_path):
    if not (REAL_DATA / "groups.csv").is_file():
        pytest.skip(f"real data not found at {REAL_DATA}")
    root = tmp_path / "mixed"
    real = real_clips()
    good = {}  # rel_path -> label of every clip that must stay in the manifest
    for k, src in enumerate(real):
        cls = "fight" if src.parent.name == "fight" else "noFight"
        rel = f"{'test' if k % 3 == 2 else 'train'}/{cls}/{src.name}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
        good[rel] = int(cls == "fight")
    for split, n in (("train", 4), ("test", 1)):
        for cls in ("fight", "noFight"):
            for i in range(n):
                rel = f"{split}/{cls}/synthetic{i}.avi"
                write_clip(root / rel)
                good[rel] = int(cls == "fight")
    leak = f"train/fight/{real[0].name}"
    shutil.copy(root / leak, root / "test/fight/same_as_train.mp4")
    good["test/fight/same_as_train.mp4"] = 1
    recoded_from = f"train/noFight/{real[3].name}"
    reencode(root / recoded_from, root / "train/noFight/recoded.avi", "MJPG", scale=0.75, quality=40)
    good["train/noFight/recoded.avi"] = 0
    odd = {
        "train/fight/grey.avi": write_grey_clip,
        "train/noFight/vfr.mkv": write_vfr_mkv,
        f"train/fight/{LONG_NAME}": write_clip,
        f"train/noFight/{SCRIPT_NAME}": write_clip,
    }
    for rel, build in odd.items():
        build(root / rel)
        good[rel] = int("/fight/" in rel)
    write_frames(root / "train/fight/k4.avi", [cv2.resize(f, (3840, 2160)) for f in look(11, n_frames=3)])
    good["train/fight/k4.avi"] = 1
    patch_avi_frame_count(write_clip(root / "train/noFight/wrong_header.avi", n_frames=20), 50)
    good["train/noFight/wrong_header.avi"] = 0
    bad = {
        "train/fight/zero.mp4": "file is empty",
        "train/fight/truncated.mp4": "truncated MP4",
        "train/noFight/text.avi": "a text file",
        "test/noFight/picture.mp4": "a PNG image",
        "train/noFight/one_frame.avi": "only 1 decodable frame",
    }
    (root / "train/fight/zero.mp4").write_bytes(b"")
    write_truncated_mp4(root / "train/fight/truncated.mp4")
    (root / "train/noFight/text.avi").write_text("not a video\n" * 50)
    write_png_as_video(root / "test/noFight/picture.mp4")
    write_clip(root / "train/noFight/one_frame.avi", n_frames=1)
    (root / "train" / "Violence").mkdir()  # an empty class folder
    os.symlink(root, root / "train/fight/loop")  # a folder link back to the root

    with pytest.warns(UserWarning, match="leakage"):
        manifest, unusable, summary = build_manifest([root], seed=3, workers=2, progress=False)

    assert dict(zip(manifest["rel_path"], manifest["label"], strict=True)) == good
    assert (manifest["status"] == "ok").all()
    reasons = reasons_of(unusable)
    assert set(reasons) == set(bad)
    for rel, expected in bad.items():
        assert expected in reasons[rel], (rel, reasons[rel])
    rows = manifest.set_index("rel_path")
    assert "grey frames" in rows.loc["train/fight/grey.avi", "warnings"]
    assert "variable or wrong frame rate" in rows.loc["train/noFight/vfr.mkv", "warnings"]
    assert rows.loc["train/noFight/wrong_header.avi", ["frames_header", "frames"]].tolist() == [50, 20]
    assert rows.loc["train/fight/k4.avi", "width"] == 3840
    assert rows["first_frame_ok"].all() and rows["last_frame_ok"].all()

    # Leakage: the copied clip, and only it, with paths and splits in audit.json.
    assert sorted(manifest.loc[manifest["leakage"], "rel_path"]) == sorted([leak, "test/fight/same_as_train.mp4"])
    [item] = summary["leakage"]["items"]
    assert item["kind"] == "exact" and item["splits"] == ["test", "train"]
    # The re-encode is a perceptual duplicate of its original, kept in its split.
    assert rows.loc["train/noFight/recoded.avi", "duplicate_of"] == f"mixed/{recoded_from}"
    assert rows.loc["train/noFight/recoded.avi", "split"] == rows.loc[recoded_from, "split"]
    assert summary["duplicates"]["clusters"] == 2
    # Grouped splits: apart from the dataset's own leak, no group or duplicate cluster spans two splits.
    clean = manifest[~manifest["leakage"]]
    assert clean.groupby("group")["split"].nunique().max() == 1
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert any("holds no video files" in n and "Violence" in n for n in summary["notes"])
    assert any("skipped folder link" in n for n in summary["notes"])
    assert summary["clips_found"] == len(good) + len(bad)
    assert summary["probe_clips_per_s"] > 0 and summary["probe_warnings"]["clips"] >= 3

    paths = write_audit(manifest, unusable, summary, tmp_path / "artifacts")
    stored = json.loads(Path(paths["audit"]).read_text(encoding="utf-8"))
    assert stored["leakage"]["items"][0]["clips"] and stored["clips_unusable"] == len(bad)
    assert set(pd.read_csv(paths["unusable"])["rel_path"]) == set(bad)
