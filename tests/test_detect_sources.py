"""Frame sources and monitor grids of the detector (nexara_lib.deploy.sources, nexara_lib.deploy.grid).

Files are real OpenCV-written clips (a few dozen small frames); cameras and streams are fake captures
with an injected clock and sleep, so reconnects, stalls and back-off run instantly and deterministically.
"""

import time

import cv2
import numpy as np
import pytest
from capture_fakes import FAIL, FakeCapture, FakeClock, marked, opener_of
from video_utils import decode_all

from nexara_lib.deploy.grid import Cell, GridError, grid_layout, parse_grid, signal_problem, split_cells, thumbnail
from nexara_lib.deploy.sources import Frame, FrameSource, Gap, SourceError, SourceSpec, expand_sources, mask_credentials
from nexara_lib.transforms.frame_views import tile_bounds

SECRET_URL = "rtsp://admin:hunter2@10.0.0.5:554/stream1"


def write_clip(path, n=24, size=(64, 48), fps=10.0, fourcc="mp4v"):
    """A small clip of n frames: a moving bright square over a ramp, so frames differ."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(n):
        frame = np.tile(np.linspace(0, 120, size[0], dtype=np.uint8), (size[1], 1))[..., None].repeat(3, 2)
        frame[8:24, 2 * i % (size[0] - 16) : 2 * i % (size[0] - 16) + 16] = (40, 200, 250)
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    return path


def live(name="camera 0", uri=0):
    return SourceSpec(name, uri, True)


FILE = SourceSpec("clip.mp4", "clip.mp4", False)


def values(frames):
    """The marker value of each frame (all its pixels hold it)."""
    return [int(f.image[0, 0, 0]) for f in frames]


# -- expand_sources ---------------------------------------------------------------------------------------


def test_expand_sources_files_folders_cameras_and_urls(tmp_path):
    folder = tmp_path / "cams"
    folder.mkdir()
    for name in ("b.avi", "a.MP4", "c.mkv", "notes.txt", "d.webm"):
        (folder / name).write_bytes(b"x")
    (folder / "sub.mp4").mkdir()  # a folder named like a video is not one
    single = write_clip(tmp_path / "one.mp4", n=2)
    specs = expand_sources(
        [
            str(single),
            str(folder),
            "0",
            " 2 ",
            SECRET_URL,
            "http://cam.local/mjpg",
            "https://x/y.m3u8",
            "udp://239.0.0.1:1234",
            "rtsps://h/s",
        ]
    )
    assert [s.name for s in specs[:5]] == ["one.mp4", "a.MP4", "b.avi", "c.mkv", "d.webm"]
    assert all(not s.live and isinstance(s.uri, str) for s in specs[:5])
    assert specs[1].uri == str(folder / "a.MP4")
    assert (specs[5].name, specs[5].uri, specs[5].live) == ("camera 0", 0, True)
    assert (specs[6].name, specs[6].uri) == ("camera 2", 2)
    assert specs[7].name == "rtsp://***@10.0.0.5:554/stream1" and specs[7].uri == SECRET_URL and specs[7].live
    assert [s.live for s in specs[8:]] == [True] * 4 and specs[8].name == "http://cam.local/mjpg"
    assert "hunter2" not in repr(specs) and "admin" not in repr(specs)


def test_expand_sources_same_file_names_keep_their_paths(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "cam.mp4").write_bytes(b"x")
    specs = expand_sources([str(tmp_path / "x"), str(tmp_path / "y")])
    assert [s.name for s in specs] == [str(tmp_path / "x" / "cam.mp4"), str(tmp_path / "y" / "cam.mp4")]


def test_expand_sources_errors_say_what_and_how(tmp_path):
    with pytest.raises(SourceError, match="no video source given"):
        expand_sources([])
    with pytest.raises(SourceError, match=r"'.*nowhere\.mp4' does not exist.*camera index"):
        expand_sources([str(tmp_path / "nowhere.mp4")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no video file"):
        expand_sources([str(tmp_path / "empty")])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    with pytest.raises(SourceError, match="holds no video file"):
        expand_sources([str(tmp_path / "docs")])
    with pytest.raises(SourceError, match="unsupported URL scheme") as err:
        expand_sources(["ftp://bob:s3cret@host/a.mp4"])
    assert "s3cret" not in str(err.value) and "***@host" in str(err.value)


def test_mask_credentials_masks_every_url():
    text = f"a {SECRET_URL} and http://u:p@ss@cam/x?q=1 and http://plain/x"
    masked = mask_credentials(text)
    assert masked == "a rtsp://***@10.0.0.5:554/stream1 and http://***@cam/x?q=1 and http://plain/x"
    assert (
        mask_credentials(RuntimeError(f"cannot reach {SECRET_URL}")) == "cannot reach rtsp://***@10.0.0.5:554/stream1"
    )


# -- files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fourcc, ext", [("mp4v", "mp4"), ("MJPG", "avi")])
def test_file_frames_are_exactly_the_training_decode(tmp_path, fourcc, ext):
    path = write_clip(tmp_path / f"clip.{ext}", n=24, fourcc=fourcc)
    [spec] = expand_sources([str(path)])
    with FrameSource(spec) as source:
        frames = list(source.frames())
        assert source.fps == 10.0 and source.fps_source == "container"
    reference = decode_all(path)
    assert len(frames) == len(reference) == 24
    for frame, expected in zip(frames, reference, strict=True):
        assert frame.image.dtype == np.uint8 and frame.image.shape == (48, 64, 3)
        np.testing.assert_array_equal(frame.image, expected)
    assert [f.index for f in frames] == list(range(24))
    np.testing.assert_allclose([f.t for f in frames], np.arange(24) / 10.0, atol=1e-6)
    assert {f.segment for f in frames} == {0} and source.gaps == []
    assert source.status == "ended" and "24 frames" in source.message
    assert source.stats == {
        "frames": 24,
        "bad_frames": 0,
        "converted": 0,
        "dropped": 0,
        "reconnects": 0,
        "unrecorded": 0,
    }


def test_given_fps_is_nominal_but_time_stays_the_containers(tmp_path):
    path = write_clip(tmp_path / "clip.avi", n=6, fourcc="MJPG")
    source = FrameSource(expand_sources([str(path)])[0], fps=25.0)
    frames = list(source.frames())
    assert (source.fps, source.fps_source) == (25.0, "given")
    np.testing.assert_allclose([f.t for f in frames], np.arange(6) / 10.0, atol=1e-6)


def write_vfr_mkv(path, ticks, fps=10.0):
    """A Matroska clip whose frames carry chosen timestamps (raw MJPEG packets muxed at 1/fps ticks)."""
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48), [cv2.VIDEOWRITER_PROP_RAW_VIDEO, 1]
    )
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot mux raw packets, so no clip with a timestamp jump")
    pts = 0
    for i, tick in enumerate(ticks):
        writer.set(cv2.VIDEOWRITER_PROP_PTS, pts)
        writer.write(cv2.imencode(".jpg", marked(20 * i))[1].reshape(1, -1))
        pts += tick
    writer.release()
    return path


def test_a_real_timestamp_jump_starts_a_new_segment(tmp_path):
    path = write_vfr_mkv(tmp_path / "jump.mkv", ticks=(1,) * 5 + (30,) + (1,) * 4)  # 0.5 s, then 3.0 s
    source = FrameSource(expand_sources([str(path)])[0])
    frames = list(source.frames())
    assert [f.segment for f in frames] == [0] * 6 + [1] * 4
    assert source.gaps == [Gap(0.5, 3.5, "timestamp jump of 3.0 s")]
    np.testing.assert_allclose([f.t for f in frames[5:7]], [0.5, 3.5], atol=1e-6)
    assert [f.index for f in frames] == list(range(10))


def test_a_file_that_is_not_a_video_does_not_open(tmp_path):
    (tmp_path / "fake.mp4").write_text("not a video")
    [spec] = expand_sources([str(tmp_path / "fake.mp4")])
    with pytest.raises(SourceError, match=r"cannot open fake\.mp4: .*not a video"):
        FrameSource(spec).open()


def test_file_timestamp_jumps_and_backwards_start_segments():
    script = [(marked(i), ms) for i, ms in enumerate([0, 100, 200, 7400, 7500, 3000, 3100])]
    source = FrameSource(FILE, opener=opener_of(FakeCapture(script, fps=10)))
    frames = list(source.frames())
    assert [f.segment for f in frames] == [0, 0, 0, 1, 1, 2, 2]
    assert [f.t for f in frames] == [0.0, 0.1, 0.2, 7.4, 7.5, 3.0, 3.1]
    assert source.gaps == [Gap(0.2, 7.4, "timestamp jump of 7.2 s"), Gap(7.5, 3.0, "timestamps went backwards")]


def test_stuck_or_missing_timestamps_fall_back_to_the_frame_rate():
    script = [(marked(i), ms) for i, ms in enumerate([0, 0, 0, float("nan"), -1, 0])]
    frames = list(FrameSource(FILE, opener=opener_of(FakeCapture(script, fps=20))).frames())
    np.testing.assert_allclose([f.t for f in frames], np.arange(6) / 20.0)
    assert {f.segment for f in frames} == {0}


def test_bad_frames_are_converted_or_skipped_and_counted():
    bgra = np.zeros((48, 64, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 255, 128  # blue, half transparent
    script = [
        marked(1),
        None,
        np.zeros((0,), np.uint8),
        np.zeros((0, 64, 3), np.uint8),
        np.full((48, 64), 7, np.uint8),
        np.full((48, 64, 1), 9, np.uint8),
        bgra,
        np.zeros((48, 64, 2), np.uint8),
        "not an array",
        np.zeros((48, 64, 3), np.float32),
        np.full((48, 64, 3), 0x3F00, np.uint16),
        marked(5),
    ]
    source = FrameSource(FILE, opener=opener_of(FakeCapture(script)))
    frames = list(source.frames())
    assert len(frames) == 6 and [f.index for f in frames] == list(range(6))
    assert source.stats["bad_frames"] == 6 and source.stats["converted"] == 4 and source.stats["frames"] == 6
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert values(frames[:3]) == [1, 7, 9]
    assert tuple(frames[3].image[0, 0]) == (0, 0, 255)  # BGRA blue -> RGB blue
    assert tuple(frames[4].image[0, 0]) == (0x3F, 0x3F, 0x3F)
    assert source.status == "ended"
    # skipped frames still count as time: the frame after them is at its read position, not squeezed up
    assert [f.t for f in frames] == pytest.approx([0.0, 0.16, 0.2, 0.24, 0.4, 0.44])


def test_a_files_read_failure_ends_it():
    source = FrameSource(FILE, opener=opener_of(FakeCapture([marked(1), marked(2), FAIL, marked(3)])))
    assert values(source.frames()) == [1, 2]
    assert source.status == "ended" and source.message == "clip.mp4 ended after 2 frames"


def test_a_decoder_exception_in_a_file_is_an_error_status_not_a_crash():
    cap = FakeCapture([marked(1), cv2.error("corrupt packet")])
    source = FrameSource(FILE, opener=opener_of(cap))
    assert values(source.frames()) == [1]
    assert source.status == "error" and "corrupt packet" in source.message and cap.released


def test_resolution_change_is_an_event_and_frames_go_on():
    script = [marked(1), marked(2), marked(3, (120, 160)), marked(4, (120, 160))]
    source = FrameSource(FILE, opener=opener_of(FakeCapture(script)))
    frames = list(source.frames())
    assert [f.image.shape for f in frames] == [(48, 64, 3)] * 2 + [(120, 160, 3)] * 2
    assert source.events == [{"t": 0.08, "event": "resolution", "from": [64, 48], "to": [160, 120]}]
    assert {f.segment for f in frames} == {0}


@pytest.mark.parametrize("container_fps", [0.0, float("nan"), 1000.0, -5.0])
def test_missing_fps_is_estimated_from_timestamps(container_fps):
    script = [(marked(i), 40.0 * i) for i in range(12)]
    script[3] = (marked(3), 40.0 * 3 + 7)  # a jittery stamp does not move the median
    source = FrameSource(FILE, opener=opener_of(FakeCapture(script, fps=container_fps)))
    source.open()
    assert source.fps == pytest.approx(25.0) and source.fps_source == "timestamps"
    assert source.events[0]["event"] == "fps" and source.events[0]["fps"] == pytest.approx(25.0)
    frames = list(source.frames())  # the frames read to measure it are not lost
    assert values(frames) == list(range(12)) and [f.index for f in frames] == list(range(12))


def test_no_fps_and_no_timestamps_is_a_clear_error():
    cap = FakeCapture([(marked(i), 0.0) for i in range(12)], fps=0.0)
    source = FrameSource(FILE, opener=opener_of(cap))
    with pytest.raises(SourceError, match=r"clip\.mp4 has no frame rate .*pass --fps"):
        source.open()
    assert cap.released and not source._pending  # the probe frames went with it
    with pytest.raises(SourceError, match="cannot open"):  # not half open: it tries again
        source.frames()
    cap = FakeCapture([(marked(i), 0.0) for i in range(12)], fps=0.0)
    source = FrameSource(FILE, fps=12.0, opener=opener_of(cap))
    assert len(list(source.frames())) == 12 and source.fps_source == "given"


# -- live sources ---------------------------------------------------------------------------------------


def test_live_time_is_seconds_since_opening():
    clock = FakeClock()
    cap = FakeCapture([marked(i) for i in range(5)], clock=clock, step=0.25)
    source = FrameSource(live(), opener=opener_of(cap), clock=clock, reconnect_attempts=0, sleep=lambda s: None)
    frames = list(source.frames())
    assert [f.t for f in frames] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25])
    assert values(frames) == list(range(5)) and source.status == "dropped" and cap.released
    assert source._thread is not None and not source._thread.is_alive()


def test_live_stream_reconnects_with_back_off_then_is_dropped():
    clock, sleeps = FakeClock(), []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.advance(seconds)

    first = FakeCapture([marked(1), marked(2), marked(3), FAIL], clock=clock)
    second = FakeCapture([marked(4), marked(5), FAIL], clock=clock)
    opener = opener_of(first, None, second)  # then every open fails
    source = FrameSource(
        SourceSpec(mask_credentials(SECRET_URL), SECRET_URL, True),
        opener=opener,
        clock=clock,
        sleep=sleep,
        reconnect_attempts=3,
    )
    frames = list(source.frames())
    assert values(frames) == [1, 2, 3, 4, 5] and [f.segment for f in frames] == [0, 0, 0, 1, 1]
    assert sleeps == [0.5, 1.0, 0.5, 1.0, 2.0]  # 0.5 * 2**k, from k = 0 after every drop
    assert opener.seen == [SECRET_URL] * 6
    [gap] = source.gaps
    assert gap.reason == "stream dropped; reconnected after 2 attempts"
    assert gap.end_t - gap.start_t == pytest.approx(0.04 + 1.5 + 0.04)
    assert source.stats["reconnects"] == 1 and source.status == "dropped"
    assert source.message.startswith(
        "rtsp://***@10.0.0.5:554/stream1: stream dropped and did not come back after 3 reconnect attempt(s) over 3.5 s"
    )
    assert "hunter2" not in source.message + repr(source.events) + repr(source.gaps)
    assert [e["event"] for e in source.events] == ["reconnect", "dropped"] and first.released and second.released


def test_live_stall_without_usable_frames_reconnects():
    clock = FakeClock()
    stalled = FakeCapture([marked(1)] + [None] * 30, clock=clock, step=1.0)  # ok reads, nothing usable
    fresh = FakeCapture([marked(2), FAIL], clock=clock)
    source = FrameSource(
        live(), opener=opener_of(stalled, fresh), clock=clock, sleep=lambda s: None, stall_s=5.0, reconnect_attempts=1
    )
    frames = list(source.frames())
    assert values(frames) == [1, 2] and [f.segment for f in frames] == [0, 1]
    assert source.gaps[0].reason == "stream stalled (no usable frame for 5 s); reconnected after 1 attempt"
    assert source.stats["bad_frames"] == 6 and stalled.released  # 6 s of nothing, then the reconnect


def test_a_lagging_consumer_gets_the_newest_frames_in_bounded_memory():
    cap = FakeCapture([marked(i) for i in range(20)])
    source = FrameSource(live(), opener=opener_of(cap), queue_frames=4, reconnect_attempts=0)
    frames = source.frames()
    source._thread.join(5)  # the consumer lags: everything is read before it looks
    got = list(frames)
    assert values(got) == [16, 17, 18, 19] and [f.index for f in got] == [0, 1, 2, 3]
    assert source.stats["dropped"] == 16 and source.stats["frames"] == 4


def test_close_stops_the_reader_thread_and_is_idempotent():
    cap = FakeCapture(forever=True)
    with FrameSource(live(), opener=opener_of(cap), queue_frames=2) as source:
        frames = source.frames()
        first = [next(frames) for _ in range(3)]
        thread = source._thread
        assert thread.is_alive() and [f.index for f in first] == [0, 1, 2]
    assert not thread.is_alive() and cap.released
    source.close()
    assert list(frames) == []
    with pytest.raises(SourceError, match="is closed"):
        source.frames()


def test_close_cuts_a_real_back_off_sleep_short():
    source = FrameSource(live(), opener=opener_of(FakeCapture([FAIL])), reconnect_attempts=5)
    frames = source.frames()
    time.sleep(0.05)  # the reader is now waiting 0.5 s, then 1 s, ...
    start = time.monotonic()
    source.close()
    assert time.monotonic() - start < 1.0 and not source._thread.is_alive()
    assert list(frames) == [] and source.status == "ok"  # closed by the caller, not lost


def test_an_unexpected_reader_error_ends_the_stream_with_a_status():
    cap = FakeCapture([marked(1), RuntimeError(f"backend broke on {SECRET_URL}")])
    source = FrameSource(live(), opener=opener_of(cap))
    assert values(source.frames()) == [1]
    assert source.status == "error" and "backend broke" in source.message and "hunter2" not in source.message


def test_open_failures_name_the_source_and_the_likely_cause():
    with pytest.raises(SourceError, match="cannot open camera 3: no camera at index 3, or it is busy"):
        FrameSource(live("camera 3", 3), opener=opener_of(None)).open()
    spec = expand_sources([SECRET_URL])[0]
    with pytest.raises(SourceError, match="URL unreachable") as err:
        FrameSource(spec, opener=opener_of(None)).open()
    assert "hunter2" not in str(err.value) and "rtsp://***@10.0.0.5" in str(err.value)

    def broken(uri):
        raise RuntimeError(f"cannot connect to {uri}")

    source = FrameSource(spec, opener=broken)
    with pytest.raises(SourceError, match="cannot open"):
        source.open()
    assert source.events[0]["event"] == "open_error" and "hunter2" not in repr(source.events)


def test_one_reader_per_source_and_arguments_are_checked():
    source = FrameSource(FILE, opener=opener_of(FakeCapture([marked(1)])))
    source.frames()
    with pytest.raises(SourceError, match="already being read"):
        source.frames()
    for bad in (
        {"fps": 0},
        {"fps": float("nan")},
        {"max_gap_s": 0},
        {"stall_s": -1},
        {"reconnect_attempts": -1},
        {"queue_frames": 0},
    ):
        with pytest.raises(SourceError, match="must be > 0"):
            FrameSource(FILE, **bad)


def test_frame_repr_and_equality_leave_the_image_out():
    frame = Frame(3, 0.5, np.zeros((2, 2, 3), np.uint8), 1)
    assert repr(frame) == "Frame(index=3, t=0.5, segment=1)"
    assert frame == Frame(3, 0.5, np.ones((4, 4, 3), np.uint8), 1)


# -- grids ----------------------------------------------------------------------------------------------


def test_parse_grid():
    assert parse_grid("2x2") == (2, 2) and parse_grid("3X3") == (3, 3) and parse_grid(" 1 x 4 ") == (1, 4)
    for bad in ("", "2", "2x", "0x2", "axb", "2x2x2", "-1x2", None):
        with pytest.raises(GridError, match="like 2x2"):
            parse_grid(bad)


def test_grid_layout_uses_tile_bounds_and_names_cells():
    layout = grid_layout(241, 322, rows=3, cols=2)
    assert [c.name for c in layout.cells] == ["r1c1", "r1c2", "r2c1", "r2c2", "r3c1", "r3c2"]
    ys, xs = tile_bounds(241, 3), tile_bounds(322, 2)
    assert [(c.y0, c.y1, c.x0, c.x1) for c in layout.cells] == [(*y, *x) for y in ys for x in xs]
    assert (layout.rows, layout.cols, layout.height, layout.width, layout.margin) == (3, 2, 241, 322, 0)
    assert grid_layout(100, 100).cells == (Cell("full", 0, 0, 0, 100, 0, 100),)
    margin = grid_layout(480, 640, 2, 2, margin=5)
    assert margin.cells[3] == Cell("r2c2", 1, 1, 245, 475, 325, 635)


def test_grid_layout_refuses_cells_too_small_to_score():
    with pytest.raises(GridError) as err:
        grid_layout(240, 320, 3, 3, min_cell=128)
    assert str(err.value) == (
        "a 3x3 grid of a 320x240 picture gives cells of 106x80 px, smaller than the 128 px "
        "minimum (detect_min_cell); use a smaller grid, a larger picture or lower detect_min_cell"
    )
    with pytest.raises(GridError, match="cells of 0x0 px after a 100 px margin"):
        grid_layout(240, 320, 2, 2, margin=100)
    for bad in ({"rows": 0}, {"cols": 1.5}, {"margin": -1}, {"min_cell": 0}):
        with pytest.raises(GridError, match="must be an integer"):
            grid_layout(240, 320, **bad)


def test_split_cells_are_views_in_row_major_order():
    image = np.arange(48 * 66 * 3, dtype=np.uint32).reshape(48, 66, 3)
    layout = grid_layout(48, 66, 2, 3, min_cell=8)
    cells = split_cells(image, layout)
    assert [c.shape for c in cells] == [(24, 22, 3)] * 6
    assert all(np.shares_memory(c, image) for c in cells)
    rows = [np.concatenate(cells[i : i + 3], axis=1) for i in (0, 3)]
    np.testing.assert_array_equal(np.concatenate(rows, axis=0), image)
    with pytest.raises(GridError, match="picture is 66x50 but the 2x3 grid was laid out for 66x48; lay the grid out"):
        split_cells(np.zeros((50, 66, 3)), layout)


def test_a_real_monitor_grid_video_splits_into_its_cameras(tmp_path):
    colours = [(0, 0, 200), (0, 200, 0), (200, 0, 0), (200, 200, 200)]  # BGR per camera
    writer = cv2.VideoWriter(str(tmp_path / "monitor.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 128))
    for i in range(8):
        frame = np.zeros((128, 160, 3), np.uint8)
        for k, (y, x) in enumerate([(0, 0), (0, 80), (64, 0), (64, 80)]):
            frame[y : y + 64, x : x + 80] = colours[k]
        frame[4:12, 4 + 4 * i : 12 + 4 * i] = 255  # motion in camera 1 only
        writer.write(frame)
    writer.release()
    source = FrameSource(expand_sources([str(tmp_path / "monitor.avi")])[0])
    frames = list(source.frames())
    layout = grid_layout(*frames[0].image.shape[:2], rows=2, cols=2, margin=6, min_cell=32)
    per_cell = [[split_cells(f.image, layout)[k] for f in frames] for k in range(4)]
    for k, colour in enumerate(colours):
        assert np.abs(per_cell[k][0].reshape(-1, 3).mean(0) - colour[::-1]).max() < 8  # RGB now
    thumbs = [[thumbnail(cell) for cell in cells] for cells in per_cell]
    assert signal_problem(thumbs[0]) is None  # the moving camera
    assert signal_problem(thumbs[3]) == "frozen"


def test_thumbnail_and_signal_problem():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 255, (120, 160, 3), np.uint8)
    thumb = thumbnail(scene)
    assert thumb.shape == (32, 32) and thumb.dtype == np.float32
    assert thumbnail(scene[..., 0], side=8).shape == (8, 8)
    black = [thumbnail(np.full((120, 160, 3), v, np.uint8)) for v in (3, 4, 3)]
    assert signal_problem(black) == "black" and signal_problem(black[:1]) == "black"
    dark_scene = np.zeros((120, 160, 3), np.uint8)
    dark_scene[:, ::20] = 60  # night: dark but with structure
    assert signal_problem([thumbnail(dark_scene)]) is None
    assert signal_problem([thumb, thumb.copy()]) == "frozen" and signal_problem([thumb]) is None
    moved = thumbnail(np.roll(scene, 9, axis=1))
    assert signal_problem([thumb, thumb, moved]) is None  # one change is enough to be alive
    assert signal_problem([]) is None
    with pytest.raises(GridError, match="thumbnail"):
        thumbnail(np.zeros((0, 4, 3), np.uint8))
