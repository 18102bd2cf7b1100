"""Detector benchmark pieces: the looping camera stand-in and the memory sampler (a benchmark is never a timed test)."""

import time

import cv2
import numpy as np
import pytest

from benchmarks.bench_detect import LoopingCapture, RssSampler


def test_looping_capture_plays_a_file_for_the_asked_time_with_continuous_timestamps(tmp_path):
    path = tmp_path / "loop.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for i in range(7):
        writer.write(np.full((24, 32, 3), 30 * i, np.uint8))
    writer.release()
    cap = LoopingCapture(str(path), total_s=2.0)
    stamps, firsts = [], []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC))
        firsts.append(int(frame[0, 0, 0]))
    cap.release()
    assert len(stamps) == 20 and cap.get(cv2.CAP_PROP_FPS) == 10.0
    assert np.allclose(np.diff(stamps), 100.0)  # no jump where the file restarts
    assert firsts[7] == firsts[0] and firsts[14] == firsts[0]  # the file really loops


def test_rss_sampler_reports_peaks_of_this_process():
    sampler = RssSampler(every=0.01)
    sampler.start()
    block = np.ones(64 * 2**20, np.uint8)  # 64 MB, touched
    time.sleep(0.1)
    sampler.stop.set()
    sampler.join()
    report = sampler.report()
    assert report["samples"] >= 3 and report["peak_mb"] >= report["first_tenth_peak_mb"] > 0
    assert block.sum() == 64 * 2**20


def test_grids_are_rows_by_columns_and_sustained_cells_need_real_time():
    from benchmarks.bench_detect import parse_grids, sustained

    assert parse_grids(["1x1", "2x3", "3X3"]) == [(1, 1), (2, 3), (3, 3)]
    cases = [
        {"cells": 4, "realtime_factor": 1.4},
        {"cells": 6, "realtime_factor": 1.0},
        {"cells": 9, "realtime_factor": 0.7},
    ]
    assert sustained(cases) == 6 and sustained(cases[2:]) == 0


def test_before_must_name_a_checkout(tmp_path):
    from benchmarks.bench_detect import _child

    with pytest.raises(ValueError, match="holds no nexara_lib"):
        _child({}, tmp_path)


@pytest.mark.slow
def test_the_benchmark_head_is_surv_devs_recipe(tmp_path):
    from benchmarks.bench_detect import build_export
    from nexara_lib.io import read_json

    facts = read_json(build_export(tmp_path) / "export.json")
    assert facts["run"]["model"] == "pooled_linear" and facts["window_s"] == 2.0
    assert [s["item"] for s in facts["streams"]] == ["identity", "motion_crop"]
    assert facts["input"]["T"] == 16 and facts["input"]["D"] == 2 * 1024


def test_the_floor_counts_the_frames_the_window_plan_really_encodes():
    from benchmarks.bench_detect import floor, measured_rate, planned_rate

    aligned = planned_rate(["identity", "motion_crop"], 0.5, 2.0, align=True)
    unaligned = planned_rate(["identity", "motion_crop"], 0.5, 2.0, align=False)
    # surv_dev at 25 fps: 48 frames every 25 share 8 + 8 of 32 positions; 50 every 25 share 0 + 2
    assert aligned["window"]["window_frames"] == 48 and aligned["window"]["aligned"]
    assert aligned["encoded_frames_per_cell_second"] == 16.0 and unaligned["encoded_frames_per_cell_second"] == 30.0
    assert floor(16.0, 0.01, 2)["cells_floor"] == 12.5
    assert measured_rate([{"backbone_frames_per_cell_second": r} for r in (16.2, 15.9, 16.0)]) == 16.0
