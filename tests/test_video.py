"""Probing and frame reading on real (tiny) video files written with OpenCV."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from video_utils import decode_all

from nexara_lib.video.frames import ShortVideoWarning, read_frames, sample_frame_indices
from nexara_lib.video.probe import VIDEO_SUFFIXES, probe_video
from nexara_lib.video.reader import VideoReadError

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "surv-fight-dev"


def write_video(path, n_frames, fourcc="MJPG", size=(64, 48), fps=10.0):
    """A clip whose frames differ visibly (brightness ramp, moving box, frame number)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    rng = np.random.default_rng(n_frames)
    for i in range(n_frames):
        frame = np.full((size[1], size[0], 3), (i * 9) % 200, np.uint8)
        frame[..., 2] = 255 - frame[..., 0]  # red differs from blue, so a BGR/RGB swap shows
        x = (i * 3) % (size[0] - 12)
        frame[10:22, x : x + 12] = rng.integers(0, 255, 3)
        cv2.putText(frame, str(i), (2, size[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        writer.write(frame)
    writer.release()
    return Path(path)


def truncated_copy(src, dst, keep=0.5):
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        "avi": write_video(folder / "a.avi", 25, "MJPG", fps=12.0),
        "mp4": write_video(folder / "b.mp4", 25, "mp4v", size=(80, 60), fps=15.0),
        "one": write_video(folder / "one.mp4", 1, "mp4v"),
        "long_avi": write_video(folder / "long.avi", 30, "MJPG"),
    }


def test_video_suffixes_are_lowercase_dotted():
    assert {".avi", ".mp4", ".mkv", ".mov", ".mpg", ".mpeg", ".wmv", ".webm", ".m4v", ".flv"} == set(VIDEO_SUFFIXES)


# FFmpeg tags mp4v streams it writes as FMP4.
@pytest.mark.parametrize(
    "kind, codecs, width, height, fps", [("avi", {"mjpg"}, 64, 48, 12.0), ("mp4", {"mp4v", "fmp4"}, 80, 60, 15.0)]
)
def test_probe_good_clip(clips, kind, codecs, width, height, fps):
    info = probe_video(clips[kind])
    assert info["status"] == "ok" and info["reason"] == ""
    assert info["opened"] is True
    assert info["codec"].lower() in codecs
    assert info["frames_header"] == 25 and info["frames"] == 25
    assert (info["width"], info["height"]) == (width, height)
    assert info["fps"] == pytest.approx(fps)
    assert info["duration_s"] == pytest.approx(25 / fps)
    assert info["bytes"] == clips[kind].stat().st_size
    assert info["first_frame_ok"] and info["last_frame_ok"] and info["warnings"] == ""
    assert len(info["phash"].split(":")) == 4 and "-" not in info["phash"]


def test_probe_unusable_files_have_readable_reasons(tmp_path, clips):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.avi"
    text.write_text("this is a text file, not a video\n" * 20)

    assert probe_video(empty)["reason"] == "file is empty (0 bytes)"
    text_info = probe_video(text)
    assert text_info["status"] == "unusable" and text_info["reason"].startswith("not a video: the file is a text file")
    one = probe_video(clips["one"])
    assert one["status"] == "unusable" and one["frames"] == 1
    assert one["reason"].startswith("only 1 decodable frame")
    missing = probe_video(tmp_path / "missing.mp4")
    assert missing["status"] == "unusable" and missing["reason"] == "file does not exist"


def test_probe_counts_decodable_frames_of_a_truncated_clip(tmp_path, clips):
    reference = len(decode_all(truncated_copy(clips["long_avi"], tmp_path / "t.avi")))
    info = probe_video(tmp_path / "t.avi")
    # The header still claims 30 frames; the verified count is what actually decodes.
    assert info["frames_header"] == 30
    assert 2 <= info["frames"] == reference < 30
    assert info["status"] == "ok" and info["last_frame_ok"]
    assert f"header claims 30 frames but {reference} decode" in info["warnings"]


def test_sample_frame_indices_spread_and_repeat():
    np.testing.assert_array_equal(sample_frame_indices(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_frame_indices(3, 5), [0, 0, 1, 2, 2])
    spread = sample_frame_indices(151, 20)
    assert spread[0] == 0 and spread[-1] == 150 and len(spread) == 20
    assert np.all(np.diff(spread) >= 7) and spread.dtype == np.int64
    for bad in [(0, 4), (10, 0), (-3, 2), (2.5, 2)]:
        with pytest.raises(ValueError, match="sample_frame_indices"):
            sample_frame_indices(*bad)


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_read_frames_equals_sequential_decode(clips, kind):
    reference = decode_all(clips[kind])
    indices = [0, 7, 3, 3, 24, 12]  # unsorted, with a repeat and the last frame
    frames = read_frames(clips[kind], indices)
    assert frames.dtype == np.uint8 and frames.shape == (6, *reference[0].shape)
    np.testing.assert_array_equal(frames, np.stack([reference[i] for i in indices]))


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_read_frames_with_next_gives_the_following_frame(clips, kind):
    reference = decode_all(clips[kind])
    indices = sample_frame_indices(len(reference), 5)  # ends on the last frame
    pairs = read_frames(clips[kind], indices, with_next=True)
    assert pairs.shape == (5, 2, *reference[0].shape)
    for k, i in enumerate(indices):
        np.testing.assert_array_equal(pairs[k, 0], reference[i])
        # The last frame has no successor: it is repeated.
        np.testing.assert_array_equal(pairs[k, 1], reference[min(i + 1, len(reference) - 1)])
    assert not np.array_equal(pairs[0, 0], pairs[0, 1])


def test_read_frames_resizes_with_inter_area(clips):
    reference = decode_all(clips["mp4"])
    frames = read_frames(clips["mp4"], [2, 5], size=(32, 20))
    expected = [cv2.resize(reference[i], (32, 20), interpolation=cv2.INTER_AREA) for i in (2, 5)]
    np.testing.assert_array_equal(frames, np.stack(expected))
    assert read_frames(clips["mp4"], [1], size=24).shape == (1, 24, 24, 3)


def test_read_frames_returns_rgb(clips):
    frame = read_frames(clips["avi"], [0])[0]
    # write_video paints blue = brightness and red = 255 - brightness; frame 0 is dark, so red wins.
    assert frame[2, 40, 0] > 200 and frame[2, 40, 2] < 60


def test_read_frames_remaps_indices_of_a_short_clip(tmp_path, clips):
    short = truncated_copy(clips["long_avi"], tmp_path / "t.avi")
    reference = decode_all(short)
    decoded = len(reference)
    indices = sample_frame_indices(30, 5)  # planned from the header's 30 frames
    with pytest.warns(ShortVideoWarning, match=f"only {decoded} frames decode"):
        frames = read_frames(short, indices)
    remapped = np.rint(indices * (decoded - 1) / 29).astype(int)
    np.testing.assert_array_equal(frames, np.stack([reference[i] for i in remapped]))
    np.testing.assert_array_equal(frames[-1], reference[-1])
    with pytest.warns(ShortVideoWarning):
        pairs = read_frames(short, indices, with_next=True)
    np.testing.assert_array_equal(pairs[-1, 0], pairs[-1, 1])  # the last frame repeats
    np.testing.assert_array_equal(pairs[0, 1], reference[1])


def test_read_frames_errors_name_the_path(tmp_path, clips):
    text = tmp_path / "fake.avi"
    text.write_text("not a video")
    with pytest.raises(VideoReadError, match="fake.avi"):
        read_frames(text, [0])
    assert issubclass(VideoReadError, ValueError)
    for bad in ([], [-1], [0.5], [[0, 1]]):
        with pytest.raises(ValueError, match="indices"):
            read_frames(clips["avi"], bad)
    for bad_size in (0, (32,), (32, -1), "32"):
        with pytest.raises(ValueError, match="size"):
            read_frames(clips["avi"], [0], size=bad_size)


@pytest.mark.realdata
def test_real_h264_clip_probe_and_read_match_sequential_decode():
    clip = REAL_DATA / "fight" / "fi001.mp4"
    if not clip.is_file():
        pytest.skip(f"real data not found at {REAL_DATA}")
    reference = decode_all(clip)
    info = probe_video(clip)
    assert info["status"] == "ok" and info["codec"] == "h264"
    assert info["frames"] == len(reference)
    indices = sample_frame_indices(info["frames"], 6)
    pairs = read_frames(clip, indices, with_next=True)
    for k, i in enumerate(indices):
        np.testing.assert_array_equal(pairs[k, 0], reference[i])
        np.testing.assert_array_equal(pairs[k, 1], reference[min(i + 1, len(reference) - 1)])
