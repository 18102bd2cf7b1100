"""Extraction benchmark: report structure and consistency only (a benchmark is never a timed test)."""

import json

import cv2
import numpy as np
import pytest

from benchmarks import bench_extraction
from nexara_lib.features.backbones import pretrained_path

pytestmark = pytest.mark.slow  # benchmark plumbing: extracts the real clips twice

N_CLIPS = 4  # chosen by --clips out of the 6 written
FRAMES = 8  # T


def _tflite_available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return pretrained_path("mobilenet_v1_tflite").is_file()


# the real encoder when it is here; else the flow backbone (no weights, no model file)
BACKBONE, WEIGHTS = ("mobilenet_v1_tflite", "imagenet") if _tflite_available() else ("flow", "none")


def write_clip(path, n_frames, size=(96, 64), seed=0):
    """A small MJPG clip whose every frame differs."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (size[1], size[0], 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, size)
    for i in range(n_frames):
        frame = np.roll(base, 2 * i, axis=1).copy()
        cv2.putText(frame, str(i), (2, size[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for folder, prefix in (("fight", "fi"), ("noFight", "nofi")):
        (root / folder).mkdir()
        for i in range(3):
            write_clip(root / folder / f"{prefix}{i:03d}.avi", 20 + 5 * i, seed=i + len(prefix))
    return root


@pytest.fixture(scope="module")
def quick_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "bench" / "extraction.json"
    code = bench_extraction.main(
        [
            "--out",
            str(out),
            "--data",
            str(data_dir),
            "--clips",
            str(N_CLIPS),
            "--quick",
            "--backbone",
            BACKBONE,
            "--weights",
            WEIGHTS,
            "--frames",
            str(FRAMES),
            "--workers",
            "2",
        ]
    )
    assert code == 0
    return out, json.loads(out.read_text())


def test_report_structure(quick_run):
    _, report = quick_run
    for key in (
        "headline",
        "targets",
        "speedup_vs_naive",
        "overlap_ratio",
        "machine",
        "data",
        "config",
        "method",
        "ours",
        "naive",
        "decode_only",
        "model_only",
        "floor",
        "rss",
        "rss_tolerance",
    ):
        assert key in report
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and machine["versions"]["python"]
    assert "commit" in machine["git"] and machine["load_average_before"] is not None
    assert report["config"] == {
        **report["config"],
        "backbone": BACKBONE,
        "frames": FRAMES,
        "workers": 2,
        "repeats": 1,
        "quick": True,
    }
    assert report["data"]["clips"] == N_CLIPS and len(report["data"]["rel_paths"]) == N_CLIPS
    assert report["data"]["labels"] == {"0": 2, "1": 2}  # evenly spread over the sorted list: both classes
    assert set(report["targets"]) == {"speedup_vs_naive", "overlap_ratio", "rss_ratio"}
    for name, (target, rule) in {
        "speedup_vs_naive": (5, ">="),
        "overlap_ratio": (1.2, "<="),
        "rss_ratio": (1.1, "<="),
    }.items():
        entry = report["targets"][name]
        assert entry["target"] == target and entry["rule"] == rule and isinstance(entry["met"], bool)
        assert entry["met"] == (entry["value"] >= target if rule == ">=" else entry["value"] <= target)
    assert "clips/s" in report["headline"] and "RSS" in report["headline"]


def test_counts_times_and_derived_numbers_agree(quick_run):
    _, report = quick_run
    ours, naive, decode, model = (report[k] for k in ("ours", "naive", "decode_only", "model_only"))
    assert ours["computed"] == N_CLIPS and ours["failed"] == 0 and ours["summary"]["clips"] == N_CLIPS
    assert naive["clips"] == decode["clips"] == model["clips"] == N_CLIPS
    assert naive["model_calls"] == N_CLIPS * FRAMES and naive["failed_reads"] == 0  # one call per frame
    assert model["frames"] == N_CLIPS * FRAMES and model["calls"] >= 1
    for side in (ours, naive, decode, model):
        assert side["wall_s"] > 0 and side["all_runs_wall_s"] == [side["wall_s"]]
        assert side["clips_per_s"] == pytest.approx(N_CLIPS / side["wall_s"])
    assert ours["model_s"] > 0 and ours["decode_s"] > 0 and naive["model_s"] > 0 and naive["decode_s"] > 0
    assert decode["cpu_s"]["decoders"] > 0 and model["cpu_s"]["main"] > 0
    assert report["speedup_vs_naive"] == pytest.approx(naive["wall_s"] / ours["wall_s"])
    assert report["overlap_ratio"] == pytest.approx(ours["wall_s"] / max(decode["wall_s"], model["wall_s"]))
    assert report["targets"]["speedup_vs_naive"]["value"] == report["speedup_vs_naive"]
    floor = report["floor"]
    assert floor["cores"] == report["machine"]["cores"]
    assert floor["floor_wall_s"] == pytest.approx((floor["decode_cpu_s"] + floor["model_cpu_s"]) / floor["cores"])
    assert floor["max_speedup_vs_naive"] == pytest.approx(naive["wall_s"] / floor["floor_wall_s"])


def test_rss_part_uses_two_1080p_clips(quick_run):
    _, report = quick_run
    rss = report["rss"]
    for name, (seconds, fps) in (("short", (2, 25)), ("long", (20, 5))):
        clip = rss[name]["clip"]
        assert (clip["width"], clip["height"]) == (1920, 1080)
        assert clip["seconds"] == seconds and clip["fps"] == fps and clip["frames"] == seconds * fps
        assert rss[name]["computed"] == 1 and rss[name]["peak_rss_mb"] > 0 and rss[name]["read"]["grabs"] > 0
    assert rss["ratio"] == pytest.approx(rss["long"]["peak_rss_mb"] / rss["short"]["peak_rss_mb"])
    assert report["targets"]["rss_ratio"]["value"] == rss["ratio"]


def test_only_the_report_and_the_synthetic_clips_are_left(quick_run):
    out, report = quick_run
    assert sorted(p.name for p in out.parent.iterdir()) == ["clips", "extraction.json"]
    clips = sorted(p.name for p in (out.parent / "clips").iterdir())
    assert clips == ["synthetic-1920x1080-25fps-2s.mp4", "synthetic-1920x1080-5fps-20s.mp4"]
    again = bench_extraction.synthetic_clip(out.parent / "clips", 2.0, 25)  # a second run reuses the clip
    assert again["reused"] and again["path"] == report["rss"]["short"]["clip"]["path"]


def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert bench_extraction.main(["--out", str(out), "--data", str(tmp_path / "missing")]) == 2
    assert bench_extraction.main(["--out", str(out), "--repeats", "0"]) == 2
    assert bench_extraction.main(["--out", str(out), "--backbone", "no_such_backbone"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()
