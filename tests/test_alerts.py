"""Detector alerts on hand-made window sequences (k-of-n confirmation, hysteresis, cooldown, unknown
windows, status), scoring alerts against truth, the event log, the timeline figure, and test videos
assembled from tiny real clips (a long video with known segments, a 2x2 grid)."""

import dataclasses
import io
import json
import math

import cv2
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.patches import Rectangle

from nexara_lib.deploy.alert_scoring import compare_policies, score_alerts, violent_segments
from nexara_lib.deploy.alerts import AlarmPolicy, Confirmation, Episode, EventLog, WindowScore, replay, status_table
from nexara_lib.deploy.montage import assemble_grid_video, assemble_long_video, nearest_index
from nexara_lib.deploy.timeline import timeline_figure
from nexara_lib.video.probe import probe_video
from tests.video_utils import decode_all

POLICY = AlarmPolicy(on_threshold=0.7, off_threshold=0.5, k=3, n=4, cooldown_s=0.0)


def seq(items, source="cam", cell="c0", w=2.0, start=0.0):
    """Windows of length w at stride w/2 (window i spans [start + i*w/2, start + i*w/2 + w]);
    a float item is a score, a string one the state of an unscored window. Frames at 10 fps."""
    out = []
    for i, item in enumerate(items):
        t = start + i * w / 2
        state = "scored" if isinstance(item, float) else item
        out.append(
            WindowScore(
                source,
                cell,
                t,
                t + w,
                item if state == "scored" else None,
                state,
                int(round(t * 10)),
                int(round((t + w) * 10)) - 1,
            )
        )
    return out


def run(policy, windows):
    """(Confirmation, every event including finish's) of one track's windows."""
    confirmation = Confirmation(policy, windows[0].source, windows[0].cell)
    events = [e for w in windows for e in confirmation.update(w)]
    return confirmation, events + confirmation.finish()


SPIKES = [0.1, 0.9, 0.1, 0.1, 0.95, 0.2, 0.1, 0.1, 0.8, 0.1]


# --------------------------------------------------------------------------- confirmation


def test_single_spikes_never_alarm_under_3_of_4_but_do_unconfirmed():
    confirmed, events = run(POLICY, seq(SPIKES))
    assert events == [] and confirmed.episodes == []
    unconfirmed, events = run(POLICY.unconfirmed(), seq(SPIKES))
    assert [e["type"] for e in events] == ["alert", "clear"] * 3
    assert [(e.start_t, e.alarm_t, e.end_t) for e in unconfirmed.episodes] == [(1, 3, 4), (4, 6, 7), (8, 10, 11)]
    first = unconfirmed.episodes[0]
    assert (first.peak, first.first_frame, first.last_frame, first.windows) == (0.9, 10, 39, 2)
    # the same baseline with a cooldown pages once: later spikes reopen the episode
    baseline = dataclasses.replace(POLICY.unconfirmed(), cooldown_s=30.0)
    reopened, events = run(baseline, seq(SPIKES))
    assert [e["type"] for e in events] == ["alert", "clear", "reopen", "clear", "reopen", "clear"]
    assert len(reopened.episodes) == 1 and reopened.episodes[0].end_t == 11 and reopened.episodes[0].peak == 0.95


def test_sustained_run_alerts_once_with_the_episode_fields():
    scores = [0.2, 0.8, 0.9, 0.3, 0.85, 0.6, 0.6, 0.4, 0.3, 0.2, 0.1]
    confirmation = Confirmation(POLICY, "cam", "c0")
    per_window = [confirmation.update(w) for w in seq(scores)]
    assert [i for i, ev in enumerate(per_window) if ev] == [4, 9]
    alert, clear = per_window[4][0], per_window[9][0]
    assert alert["type"] == "alert" and alert["t"] == 6.0 and alert["end_t"] is None
    assert (alert["start_t"], alert["alarm_t"], alert["first_frame"], alert["peak"]) == (1.0, 6.0, 10, 0.9)
    assert clear["type"] == "clear" and clear["end_t"] == 11.0
    (episode,) = confirmation.episodes
    assert (episode.start_t, episode.alarm_t, episode.end_t, episode.windows, episode.last_frame) == (1, 6, 11, 9, 109)
    assert confirmation.finish() == []


def test_hysteresis_keeps_the_alarm_on_between_off_and_on():
    scores = [0.2, 0.8, 0.9, 0.3, 0.85, 0.6, 0.6, 0.6, 0.6, 0.6, 0.4, 0.3, 0.2]
    with_hysteresis, _ = run(POLICY, seq(scores))
    assert [(e.alarm_t, e.end_t) for e in with_hysteresis.episodes] == [(6, 14)]  # 0.6 >= off: stays on
    without, _ = run(dataclasses.replace(POLICY, off_threshold=0.7), seq(scores))
    assert [(e.alarm_t, e.end_t) for e in without.episodes] == [(6, 8)]  # 0.6 < on = off: clears


def test_unknown_windows_count_as_neither_hit_nor_low():
    never, _ = run(POLICY, seq([0.9, "gap", 0.9, "error", 0.9, "no_signal", 0.9, "gap"]))
    assert never.episodes == []  # at most 2 hits among any 4 windows
    held, events = run(POLICY, seq([0.9, 0.9, 0.9, 0.1, "gap", 0.1, "error", 0.1]))
    assert [e["type"] for e in events] == ["alert", "clear"]  # unknowns do not clear it either
    assert events[-1]["reason"] == "end of stream" and held.episodes[0].end_t == 9.0
    dropped, events = run(POLICY, seq([0.9, 0.9, 0.9] + ["gap"] * 6))
    assert [e["type"] for e in events] == ["alert", "clear"] and events[-1]["end_t"] == 10.0
    summary = dropped.summary()
    assert (summary["windows"], summary["unknown"], summary["gap"], summary["status"]) == (9, 6, 6, "stale")


def test_cooldown_reopens_the_episode_instead_of_a_second_alert():
    scores = [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]
    within, events = run(dataclasses.replace(POLICY, cooldown_s=5.0), seq(scores))
    assert [e["type"] for e in events] == ["alert", "clear", "reopen", "clear"]
    assert [(e.start_t, e.alarm_t, e.end_t, e.windows) for e in within.episodes] == [(0, 4, 13, 12)]
    assert within.summary()["alerts"] == 1
    after, events = run(dataclasses.replace(POLICY, cooldown_s=2.0), seq(scores))  # new alarm 3 s after the end
    assert [e["type"] for e in events] == ["alert", "clear", "alert", "clear"]
    assert [(e.start_t, e.alarm_t, e.end_t) for e in after.episodes] == [(0, 4, 7), (6, 10, 13)]


def test_windows_out_of_order_repeated_or_of_another_cell_are_errors():
    confirmation = Confirmation(POLICY, "cam", "c0")
    first, second = seq([0.1, 0.2])
    confirmation.update(second)
    with pytest.raises(ValueError, match="start_t order"):
        confirmation.update(first)
    with pytest.raises(ValueError, match="start_t order"):
        confirmation.update(second)
    with pytest.raises(ValueError, match="'c1'"):
        confirmation.update(seq([0.1], cell="c1", start=5)[0])
    confirmation.finish()
    with pytest.raises(ValueError, match="finished"):
        confirmation.update(seq([0.1], start=9)[0])


@pytest.mark.parametrize(
    "items, status",
    [
        ([], "no windows"),
        (["no_signal"] * 3 + [0.1] * 2, "no signal"),
        (["error"] * 3 + [0.1] * 2, "error"),
        (["gap", "no_signal", "error", 0.1], "stale"),
        ([0.1, "gap", 0.2, 0.3], "ok"),
    ],
)
def test_status(items, status):
    confirmation = Confirmation(POLICY, "cam", "c0")
    for window in seq(items):
        confirmation.update(window)
    assert confirmation.summary()["status"] == status
    table = status_table([confirmation])
    assert list(table["status"]) == [status] and table.loc[0, "windows"] == len(items)


def test_policy_and_window_checks():
    for bad in (
        dict(on_threshold=0.5, off_threshold=0.6),
        dict(on_threshold=1.2, off_threshold=0.5),
        dict(on_threshold=0.7, off_threshold=0.5, k=5, n=4),
        dict(on_threshold=0.7, off_threshold=0.5, k=0),
        dict(on_threshold=0.7, off_threshold=0.5, cooldown_s=-1),
    ):
        with pytest.raises(ValueError, match="AlarmPolicy"):
            AlarmPolicy(**bad)
    params = {"detect_confirm_k": 2, "detect_confirm_n": 5, "detect_hysteresis": 0.1, "detect_cooldown_s": 12}
    policy = AlarmPolicy.from_params(params, 0.65)
    assert (policy.k, policy.n, policy.cooldown_s) == (2, 5, 12.0) and policy.off_threshold == pytest.approx(0.55)
    assert AlarmPolicy.from_params({**params, "detect_hysteresis": 0.9}, 0.3).off_threshold == 0.0
    base = policy.unconfirmed()
    assert (base.k, base.n, base.on_threshold, base.off_threshold, base.cooldown_s) == (1, 1, 0.65, 0.65, 12.0)
    for score, state in ((None, "scored"), (0.5, "gap"), (1.5, "scored"), (math.nan, "scored"), (0.5, "bogus")):
        with pytest.raises(ValueError, match="window 'cam'"):
            WindowScore("cam", "c0", 0.0, 1.0, score, state, 0, 9)
    with pytest.raises(ValueError, match="start_t <= end_t"):
        WindowScore("cam", "c0", 2.0, 1.0, 0.5, "scored", 0, 9)


# --------------------------------------------------------------------------- scoring against truth


def ep(start, alarm, end, cell="c0"):
    return Episode("cam", cell, start, alarm, end, 0.9, 0, 1, 3)


TRUTH = [
    {"start_t": 0, "end_t": 100, "label": 0},
    {"start_t": 100, "end_t": 130, "label": "violent"},
    {"start_t": 130, "end_t": 140, "label": 1},
    {"start_t": 140, "end_t": 1000, "label": "non-violent"},
    {"start_t": 1000, "end_t": 1020, "label": 1},
    {"start_t": 3000, "end_t": 3010, "label": 1},
]
EPISODES = [ep(96, 104, 150), ep(500, 506, 520), ep(1019.5, 1025, 1040), ep(1021, 1027, 1030), ep(7000, 7100, None)]


def test_score_alerts_on_hand_made_truth():
    assert violent_segments(TRUTH) == [(100, 140), (1000, 1020), (3000, 3010)]  # touching clips are one event
    result = score_alerts(EPISODES, TRUTH, duration_s=7200)
    assert {k: result[k] for k in ("alerts", "violent_segments", "detected", "missed", "false_alarms", "hours")} == {
        "alerts": 5,
        "violent_segments": 3,
        "detected": 2,
        "missed": 1,
        "false_alarms": 3,
        "hours": 2.0,
    }
    assert result["onset_to_alarm_s"] == [4, 25] and result["median_onset_to_alarm_s"] == 14.5
    assert result["false_alarms_per_hour"] == 1.5
    tolerant = score_alerts(EPISODES, TRUTH, duration_s=7200, tolerance_s=2)
    assert (tolerant["false_alarms"], tolerant["false_alarms_per_hour"]) == (2, 1.0)  # 1021 is within 2 s of 1020
    already_on = score_alerts([ep(90, 95, 120)], [{"start_t": 100, "end_t": 110, "label": 1}], 600)
    assert already_on["onset_to_alarm_s"] == [0.0]
    nothing = score_alerts([], [{"start_t": 0, "end_t": 10, "label": 0}], 600)
    assert (nothing["detected"], nothing["median_onset_to_alarm_s"], nothing["false_alarms_per_hour"]) == (0, None, 0)


def test_score_alerts_errors():
    with pytest.raises(ValueError, match="duration_s"):
        score_alerts([], TRUTH, 0)
    with pytest.raises(ValueError, match="label 'maybe'"):
        score_alerts([], [{"start_t": 0, "end_t": 1, "label": "maybe"}], 10)
    with pytest.raises(ValueError, match="lacks"):
        score_alerts([], [{"start_t": 0, "label": 1}], 10)
    with pytest.raises(ValueError, match="one source/cell"):
        score_alerts([ep(0, 1, 2), ep(0, 1, 2, cell="c1")], TRUTH, 10)


COMPARE_SCORES = [0.1] * 41
for _i in [5, 12, *range(19, 29)]:
    COMPARE_SCORES[_i] = 0.9
COMPARE_TRUTH = [
    {"start_t": 0, "end_t": 20, "label": 0},
    {"start_t": 20, "end_t": 30, "label": 1},
    {"start_t": 30, "end_t": 42, "label": 0},
]


def test_compare_policies_replays_the_same_windows():
    windows = seq(COMPARE_SCORES)
    table = compare_policies(
        windows, {"confirmed (3 of 4)": POLICY, "every window": POLICY.unconfirmed()}, COMPARE_TRUTH, 42.0
    )
    assert list(table.index) == ["confirmed (3 of 4)", "every window"] and table.index.name == "policy"
    assert list(table.columns) == [
        "alerts",
        "detected",
        "violent segments",
        "missed",
        "false alarms",
        "false alarms per hour",
        "median onset-to-alarm (s)",
    ]
    confirmed, every = table.loc["confirmed (3 of 4)"], table.loc["every window"]
    assert (confirmed["alerts"], confirmed["detected"], confirmed["missed"], confirmed["false alarms"]) == (1, 1, 0, 0)
    assert confirmed["median onset-to-alarm (s)"] == 3.0 and confirmed["violent segments"] == 1
    assert (every["alerts"], every["detected"], every["false alarms"]) == (3, 1, 2)
    assert every["false alarms per hour"] == pytest.approx(2 / (42 / 3600))
    assert every["median onset-to-alarm (s)"] == 1.0
    # two cells: truth per cell, hours add up
    both = windows + seq(COMPARE_SCORES, cell="c1")
    two = compare_policies(both, {"c": POLICY}, {"cam/c0": COMPARE_TRUTH, "c1": COMPARE_TRUTH}, 42.0)
    assert (two.loc["c", "detected"], two.loc["c", "violent segments"]) == (2, 2)
    with pytest.raises(ValueError, match="tracks"):
        compare_policies(both, {"c": POLICY}, COMPARE_TRUTH, 42.0)
    with pytest.raises(ValueError, match="no truth for 'cam'/'c1'"):
        compare_policies(both, {"c": POLICY}, {"cam/c0": COMPARE_TRUTH}, 42.0)


# --------------------------------------------------------------------------- event log


def test_event_log_lines_are_json_after_every_write(tmp_path):
    path = tmp_path / "logs" / "events.jsonl"
    _, events = run(POLICY, seq(COMPARE_SCORES))
    extra = {"type": "status", "note": "caf\u00e9", "score": np.float32(0.25), "missing": math.nan}
    with EventLog(path) as log:
        for i, event in enumerate([*events, extra]):
            log.write(event)
            lines = path.read_text(encoding="ascii").splitlines()  # visible before close: flushed
            assert len(lines) == i + 1 and json.loads(lines[-1])["type"] == event["type"]
    parsed = [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]
    assert parsed[0]["alarm_t"] == events[0]["alarm_t"] and parsed[-1]["note"] == "caf\u00e9"
    assert parsed[-1]["missing"] is None and parsed[-1]["score"] == 0.25 and "\\u00e9" in path.read_text()
    with pytest.raises(ValueError, match="closed"):
        log.write({"type": "late"})
    with EventLog(path, append=True) as log:
        log.write({"type": "restart"})
    assert len(path.read_text().splitlines()) == len(parsed) + 1
    with EventLog(path) as log:  # a fresh log by default
        with pytest.raises(ValueError, match="dict"):
            log.write(["not", "an", "event"])
    assert path.read_text() == ""


# --------------------------------------------------------------------------- timeline


def _grid_windows():
    return (
        seq(COMPARE_SCORES, cell="c0")
        + seq(COMPARE_SCORES[:10] + ["gap"] * 4 + COMPARE_SCORES[14:], cell="c1")
        + seq([0.2, "no_signal", "error", 0.9], source="door", cell="")
    )


def test_timeline_figure_with_and_without_truth():
    windows = _grid_windows()
    episodes = [e for c in replay(windows, POLICY).values() for e in c.episodes]
    for truth in (None, {"cam/c0": COMPARE_TRUTH, "c1": COMPARE_TRUTH}):
        fig = timeline_figure(windows, episodes, POLICY, truth=truth, title="test")
        assert len(fig.axes) == 3
        titles = [ax.get_title(loc="left") for ax in fig.axes]
        assert titles == ["cam \u00b7 c0", "cam \u00b7 c1", "door"]
        for ax in fig.axes:
            assert any(isinstance(c, LineCollection) for c in ax.collections)  # the window scores
            levels = {line.get_ydata()[0] for line in ax.lines if len(line.get_ydata()) == 2}
            assert {0.7, 0.5} <= levels  # on and off thresholds
        spans = [[p for p in ax.patches if isinstance(p, Rectangle)] for ax in fig.axes]
        assert len(spans[0]) == 1 and len(spans[1]) == 2 and len(spans[2]) == 2  # alarm; alarm + gap; no_signal + error
        assert any(p.get_hatch() == "///" for p in spans[1])
        bands = [[c for c in ax.collections if isinstance(c, PolyCollection)] for ax in fig.axes]
        assert [len(b) for b in bands] == ([0, 0, 0] if truth is None else [2, 2, 0])
        assert fig.axes[-1].get_xlabel() == "time (s)"
        fig.savefig(io.BytesIO(), format="png", dpi=40)


def test_timeline_of_a_long_source_is_in_minutes_and_empty_input_still_draws():
    windows = seq([0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1], w=240.0)
    fig = timeline_figure(windows, replay(windows, POLICY)[("cam", "c0")].episodes, POLICY)
    assert fig.axes[-1].get_xlabel() == "time (min)" and fig.axes[-1].get_xlim()[1] == pytest.approx(16.0)
    empty = timeline_figure([], [], POLICY)
    assert len(empty.axes) == 1 and empty.axes[0].texts[0].get_text() == "no windows to show"


# --------------------------------------------------------------------------- montage


def colour(clip: int, index: int) -> tuple[int, int, int]:
    """BGR colour of frame ``index`` of test clip ``clip`` (neighbouring frames differ by 22 in G)."""
    return (40 + 80 * clip, 20 + 22 * index, 128)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three labelled clips: 10 fps x 6 frames, 20 fps x 10 frames, 10 fps x 4 frames at 80x60."""
    folder = tmp_path_factory.mktemp("clips")
    specs = [("a.avi", 10.0, 6, (64, 48), 0), ("b.avi", 20.0, 10, (64, 48), 1), ("c.avi", 10.0, 4, (80, 60), 0)]
    out = []
    for clip, (name, fps, n, (w, h), label) in enumerate(specs):
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
        for i in range(n):
            writer.write(np.full((h, w, 3), colour(clip, i), np.uint8))
        writer.release()
        out.append((str(folder / name), label))
    return out


def _mean_colours(path) -> np.ndarray:
    return decode_all(path, rgb=False).reshape(-1, 48 * 64, 3).mean(axis=1)


@pytest.mark.parametrize(
    "fps, name, expected",
    [
        (None, "long.mp4", [(0, i) for i in range(6)] + [(1, i) for i in (0, 2, 4, 6, 8)] + [(2, i) for i in range(4)]),
        (
            20.0,
            "long20.avi",
            [(0, i // 2) for i in range(12)] + [(1, i) for i in range(10)] + [(2, i // 2) for i in range(8)],
        ),
    ],
)
def test_assemble_long_video_resamples_each_clip_by_time(clips, tmp_path, fps, name, expected):
    out = tmp_path / name
    segments = assemble_long_video(clips, out, fps=fps)
    rate = fps or 10.0
    info = probe_video(out)
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (len(expected), 64, 48, rate)
    assert [(s["start_t"], s["end_t"]) for s in segments] == [(0.0, 0.6), (0.6, 1.1), (1.1, 1.5)]
    assert [s["end_t"] - s["start_t"] for s in segments] == pytest.approx([0.6, 0.5, 0.4])  # each clip's duration
    assert [(s["label"], s["class_name"], s["clip"]) for s in segments] == [
        (0, "non-violent", "a.avi"),
        (1, "violent", "b.avi"),
        (0, "non-violent", "c.avi"),
    ]
    assert [(s["first_frame"], s["last_frame"]) for s in segments] == [
        (0, 6 * rate // 10 - 1),
        (6 * rate // 10, 11 * rate // 10 - 1),
        (11 * rate // 10, 15 * rate // 10 - 1),
    ]
    got = _mean_colours(out)
    want = np.array([colour(c, i) for c, i in expected], float)
    assert np.abs(got - want).max() < 10, (
        "an output frame is not the source frame nearest its time"
    )  # frames differ by 22
    assert not list(tmp_path.glob(".*.tmp*"))  # written atomically: no temporary left


def test_nearest_index_ties_go_to_the_earlier_frame():
    assert [nearest_index(j / 20, 10, 6) for j in range(14)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5]
    assert [nearest_index(j / 10, 20, 10) for j in range(6)] == [0, 2, 4, 6, 8, 9]


def test_assemble_errors_name_the_clip(clips, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 50)
    with pytest.raises(ValueError, match="broken.mp4"):
        assemble_long_video([clips[0], (str(broken), 1)], tmp_path / "out.avi")
    with pytest.raises(ValueError, match="label"):
        assemble_long_video([(clips[0][0], 2)], tmp_path / "out.avi")
    with pytest.raises(ValueError, match=".mkv"):
        assemble_long_video(clips, tmp_path / "out.mkv")
    with pytest.raises(ValueError, match="2x2 grid takes 1 to 4"):
        assemble_grid_video([clips[0][0]] * 5, 2, 2, tmp_path / "grid.avi", (32, 24))
    assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob("grid*"))


def test_assemble_grid_video_quadrants_are_the_resized_inputs(clips, tmp_path):
    long_path = tmp_path / "long.avi"
    assemble_long_video(clips, long_path)
    inputs = [long_path, clips[0][0], clips[1][0]]  # 1.5 s at 10 fps, 0.6 s at 10 fps, 0.5 s at 20 fps
    out = tmp_path / "grid.avi"
    assert assemble_grid_video(inputs, 2, 2, out, (32, 24)) is None
    info = probe_video(out)
    assert (info["width"], info["height"], info["frames"], info["fps"]) == (64, 48, 15, 10.0)
    grid = decode_all(out, rgb=False)
    sources = [decode_all(p, rgb=False) for p in inputs]
    source_index = [lambda j: j, lambda j: j, lambda j: 2 * j]  # the input frame at time j / 10 s
    black = np.zeros((24, 32, 3))
    for j, frame in enumerate(grid):
        for k in range(4):
            r, c = divmod(k, 2)
            quadrant = frame[r * 24 : (r + 1) * 24, c * 32 : (c + 1) * 32].astype(float)
            if k < 3 and source_index[k](j) < len(sources[k]):
                want = cv2.resize(sources[k][source_index[k](j)], (32, 24), interpolation=cv2.INTER_AREA)
            else:
                want = black  # after the input's end, and the unused fourth cell
            assert np.abs(quadrant - want).mean() < 4, f"frame {j}, quadrant {k}"


def test_a_false_alarm_continued_by_a_fight_within_the_cooldown_is_still_scored_false():
    policy = AlarmPolicy(on_threshold=0.5, off_threshold=0.5, k=1, n=1, cooldown_s=30.0)
    scores = [0.1, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1]  # a calm spike at 1 s, the fight from 4 s
    windows = [WindowScore("cam", "full", float(i), i + 1.0, s, "scored", i, i + 1) for i, s in enumerate(scores)]
    confirmation = Confirmation(policy, "cam", "full")
    for w in windows:
        confirmation.update(w)
    confirmation.finish()
    assert len(confirmation.episodes) == 1 and len(confirmation.periods) == 2  # one page, two alarm stretches
    truth = [{"start_t": 4.0, "end_t": 6.0, "label": 1}]
    table = compare_policies(windows, {"every window": policy}, truth, 7.0)
    row = table.loc["every window"]
    assert row["alerts"] == 1 and row["false alarms"] == 1 and row["detected"] == 1
    assert row["median onset-to-alarm (s)"] == 1.0  # the fight's own alarm, not the earlier false one
