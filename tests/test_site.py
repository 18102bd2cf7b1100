"""Per-camera calibration (issue 21, item 2): the threshold from a camera's normal scores, the footage it needs,
the site file (refusing another export, deterministic), and how cameras are named on the command line."""

import numpy as np
import pytest

from nexara_lib.deploy.site import (
    CalibrationError,
    Site,
    calibrated_threshold,
    camera_entry,
    export_identity,
    footage_needed,
    open_site,
    too_little,
)
from nexara_lib.deploy.source_specs import camera_key, expand_sources, split_camera_name

MANIFEST = {
    "model": {"sha256": "m" * 64},
    "variants": {"float32": {"sha256": "a" * 64}, "int8": {"sha256": "b" * 64}},
    "input": {"T": 6, "D": 49},
}


def test_threshold_lets_through_at_most_the_target_share_of_normal_windows():
    scores = np.linspace(0.0, 0.99, 100)  # 100 distinct normal scores
    on, share = calibrated_threshold(scores, 0.05)
    assert share == pytest.approx(0.05) and np.sum(scores >= on) == 5
    assert scores[-6] < on <= scores[-5]  # the lowest such threshold: the midpoint below the 5th highest
    # a stricter rate raises it; ties at the top cannot be split, so the threshold goes above them all
    assert calibrated_threshold(scores, 0.01)[0] > on
    on_tied, share_tied = calibrated_threshold([0.2] * 90 + [0.9] * 10, 0.05)
    assert share_tied == 0.0 and on_tied > 0.9 and on_tied <= 1.0


def test_footage_needed_follows_the_tail_of_the_rate():
    need = footage_needed(0.05, window_s=3.0, stride=0.5, tail_windows=10, min_minutes=0.0)
    assert need["windows"] == 200  # 10 windows above a 5% quantile
    assert need["minutes"] == pytest.approx((3.0 + 199 * 1.5) / 60)
    assert footage_needed(0.05, 3.0, 0.5, 10, min_minutes=30.0)["minutes"] == 30.0
    assert footage_needed(0.01, 3.0, 0.5, 10, 0.0)["windows"] == 1000
    message = too_little("lobby", need, minutes=2.0, windows=80, rate=0.05)
    assert message == (
        "camera 'lobby' needs at least 5.0 minutes of normal footage (200 scored windows for a 5% false-alarm "
        "rate), got 2.0 minutes (80 scored windows)"
    )
    assert too_little("lobby", need, minutes=6.0, windows=200, rate=0.05) is None


def test_site_file_refuses_another_export_and_is_deterministic(tmp_path):
    identity = export_identity(MANIFEST, "float32", 3.1466666666)
    site = open_site(tmp_path / "site.json", identity)
    scores = np.random.default_rng(0).uniform(0, 0.6, 300)
    footage = [{"source": "lobby", "path": "/x.mp4", "live": False, "start_s": 0.0, "end_s": 450.0, "windows": 300}]
    entry = camera_entry(scores, footage, rate=0.05, minutes=7.5, export_on=0.52, cell="full")
    site.cameras["lobby"] = entry
    site.save()
    first = (tmp_path / "site.json").read_bytes()
    again = open_site(tmp_path / "site.json", identity)
    again.cameras["lobby"] = camera_entry(scores, footage, rate=0.05, minutes=7.5, export_on=0.52, cell="full")
    again.save()
    assert (tmp_path / "site.json").read_bytes() == first  # same footage, same file
    loaded = Site.load(tmp_path / "site.json")
    assert loaded.threshold("lobby") == entry["on_threshold"] and loaded.threshold("hall") is None
    assert entry["windows"] == 300 and entry["windows_above"] == 15 and set(entry["quantiles"]) >= {"p95", "max"}
    for other in (
        export_identity({**MANIFEST, "model": {"sha256": "n" * 64}}, "float32", 3.1466666666),  # retrained model
        export_identity(MANIFEST, "int8", 3.1466666666),  # another head variant
        export_identity(MANIFEST, "float32", 2.0),  # another window length
    ):
        with pytest.raises(CalibrationError, match="calibrated with another export.*nexara calibrate"):
            open_site(tmp_path / "site.json", other)
    (tmp_path / "bad.json").write_text('{"format": 1}')
    with pytest.raises(CalibrationError, match="not a site file"):
        Site.load(tmp_path / "bad.json")


def test_cameras_are_named_on_the_command_line(tmp_path):
    folder = tmp_path / "lobby recordings"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "k=v.mp4").write_bytes(b"x")  # an existing file whose name holds '=' stays a file
    specs = expand_sources(
        [f"lobby={folder}", f"gate={tmp_path / 'k=v.mp4'}", str(tmp_path / "k=v.mp4"), "door=0", "rtsp://u:p@h/s?a=b"]
    )
    assert [(s.name, s.camera_name, s.live) for s in specs] == [
        ("lobby/a.mp4", "lobby", False),
        ("lobby/b.mp4", "lobby", False),
        ("gate", "gate", False),
        ("k=v.mp4", "k=v.mp4", False),
        ("door", "door", True),
        ("rtsp://***@h/s?a=b", "rtsp://***@h/s?a=b", True),
    ]
    assert split_camera_name("rtsp://host/x?token=1") == ("", "rtsp://host/x?token=1")
    assert camera_key("lobby", "full") == "lobby" and camera_key("monitor", "r1c2") == "monitor/r1c2"
