"""Windows sampled as training sampled clips: offsets, nearest-by-timestamp picks, next frames, bounded memory."""

import numpy as np
import pytest

from nexara_lib.deploy.windows import WindowPlan, WindowSampler, _candidates
from nexara_lib.features.clip_jobs import sampled_indices


def _run(plan, times):
    """Push frames with timestamps ``times`` (image = frame index); returns closed windows {m: {g: Picked}}."""
    sampler = WindowSampler(plan, times[0])
    windows = {}
    for i, t in enumerate(times):
        sampler.push(i, t, i)
        windows.update(dict(sampler.complete_windows()))
    sampler.end()
    windows.update(dict(sampler.complete_windows()))
    return sampler, windows


def test_plan_uses_the_training_sampler():
    plan = WindowPlan.build(fps=25, window_s=3.0, stride=0.5, frames_per_window=16, reads_next=[False, True])
    assert plan.window_frames == 75 and plan.stride_frames == 38
    assert list(plan.offsets[0]) == list(sampled_indices(75, 16, False))
    assert list(plan.offsets[1]) == list(sampled_indices(75, 16, True))  # pairs sample over [0, n - 2]
    assert plan.targets(2)[0][0] == 76


@pytest.mark.parametrize("window_s, fps", [(0.05, 25), (3.0, 0)])
def test_plan_refuses_impossible_windows(window_s, fps):
    with pytest.raises(ValueError, match="window|frame rate"):
        WindowPlan.build(fps=fps, window_s=window_s, stride=0.5, frames_per_window=8, reads_next=[False])


def test_constant_rate_windows_pick_exactly_the_training_frames():
    fps, n, t_count = 30.0, 90, 16
    plan = WindowPlan.build(fps, n / fps, 0.5, t_count, [False])
    times = [5.0 + i / fps for i in range(400)]  # the stream starts at t = 5 s
    _, windows = _run(plan, times)
    assert len(windows) == (400 - n) // plan.stride_frames + 1
    for m, picked in windows.items():
        want = plan.start(m) + sampled_indices(n, t_count, False)
        assert [picked[g].index for g in plan.targets(m)[0]] == list(want)


def test_millisecond_rounded_timestamps_still_pick_exact_frames():
    fps, n = 30.0, 61
    plan = WindowPlan.build(fps, n / fps, 1.0, 8, [True])
    times = [round(i * 1000 / fps) / 1000 for i in range(n)]  # containers round to whole ms
    _, windows = _run(plan, times)
    assert list(windows) == [0]
    picked = windows[0]
    assert [picked[g].index for g in plan.targets(0)[0]] == list(sampled_indices(n, 8, True))
    assert all(picked[g].next_image == picked[g].index + 1 for g in picked)  # each frame's next frame


def test_variable_frame_rate_picks_the_frame_nearest_in_time():
    rng = np.random.default_rng(0)
    fps = 20.0
    plan = WindowPlan.build(fps, 2.0, 0.5, 6, [False])
    times = np.cumsum(rng.uniform(0.02, 0.08, size=300))
    _, windows = _run(plan, list(times))
    assert windows
    for m, picked in windows.items():
        for g in plan.targets(m)[0]:
            tau = times[0] + g / fps
            chosen = picked[g].index
            assert abs(times[chosen] - tau) <= np.min(np.abs(times - tau)) + 1e-9


def test_last_frame_is_its_own_next_frame_at_the_end():
    fps, n = 10.0, 20
    plan = WindowPlan.build(fps, n / fps, 1.0, 5, [True])
    times = [i / fps for i in range(n)]
    sampler = WindowSampler(plan, 0.0)
    for i, t in enumerate(times):
        sampler.push(i, t, i)
    sampler.end()
    ((m, picked),) = sampler.complete_windows()
    last = max(picked)
    assert picked[last].index == n - 2 and picked[last].next_image == n - 1
    plan_identity = WindowPlan.build(fps, n / fps, 1.0, 5, [False])
    sampler = WindowSampler(plan_identity, 0.0)
    for i, t in enumerate(times):
        sampler.push(i, t, i)
    sampler.end()
    ((m, picked),) = sampler.complete_windows()
    assert picked[n - 1].index == n - 1 and picked[n - 1].next_image == n - 1


def test_memory_stays_bounded_over_a_long_stream():
    fps = 25.0
    plan = WindowPlan.build(fps, 4.0, 0.5, 16, [False])
    sampler = WindowSampler(plan, 0.0)
    held = []
    for i in range(25 * 60 * 10):  # ten minutes
        sampler.push(i, i / fps, None)
        sampler.complete_windows()
        held.append(len(sampler.decided) + len(sampler.pending))
    assert max(held) <= 3 * 16
    assert max(held[-1000:]) == max(held[1000:2000])  # flat, not growing


# ---------------------------------------------------------------- aligned windows (detect_align_windows)
def _shared(plan):
    return [plan.shared_positions(i) for i in range(len(plan.offsets))]


def test_a_span_of_whole_steps_samples_exact_multiples_and_overlapping_windows_share_them():
    """The training sampler's rounding, checked rather than assumed: over a span of (T - 1) * k + 1 frames its T
    indices are exactly 0, k, 2k, ... (n = span, or span + 1 for streams reading the next frame), so windows every
    k * j frames share T - j positions; such a plan is always among the aligned candidates."""
    for t_count in range(2, 33):
        for k in range(1, 13):
            for reads_next in (False, True):
                n = (t_count - 1) * k + 1 + reads_next
                assert list(sampled_indices(n, t_count, reads_next)) == [i * k for i in range(t_count)]
                for stride in (0.25, 0.5, 1.0):
                    j = max(1, int(stride * (t_count - 1) + 0.5))
                    assert (n, k * j) in _candidates(n, t_count, stride, [reads_next])
                    plan = WindowPlan(25.0, n, k * j, (tuple(sampled_indices(n, t_count, reads_next).tolist()),), n)
                    assert plan.shared_positions(0) == t_count - j
                    assert plan.targets(1)[0][: t_count - j] == plan.targets(0)[0][j:]


def _plans_to_check():
    for fps in (10.0, 25.0, 29.97, 60.0):
        for t_count in (2, 6, 16, 32):
            for reads_next in ([False], [True], [False, True], [True, False, False]):
                for window_s in (1.0, 2.0, 3.0):
                    for stride in (0.5, 1.0):
                        yield fps, t_count, reads_next, window_s, stride


def test_aligned_plans_sample_as_training_and_share_at_least_what_the_asked_window_does():
    gained = 0
    for fps, t_count, reads_next, window_s, stride in _plans_to_check():
        asked = WindowPlan.build(fps, window_s, stride, t_count, reads_next)
        plan = WindowPlan.build(fps, window_s, stride, t_count, reads_next, align=True)
        n = plan.window_frames
        assert plan.requested_frames == asked.window_frames == int(round(window_s * fps))
        assert abs(n - asked.window_frames) <= (t_count - 1) / 2
        for offsets, r in zip(plan.offsets, reads_next, strict=True):
            assert list(offsets) == list(sampled_indices(n, t_count, r))  # every window samples as training did
        assert sum(_shared(plan)) >= sum(_shared(asked))
        if not plan.aligned:  # nothing to gain: exactly the asked window
            assert (n, plan.stride_frames) == (asked.window_frames, asked.stride_frames)
        gained += sum(_shared(plan)) > sum(_shared(asked))
    assert gained > 300  # of 384 plans (in the others no plan nearby shares more)


def test_surv_devs_windows_share_half_their_frames_in_both_streams():
    plan = WindowPlan.build(25.0, 2.0, 0.5, 16, [False, True], align=True)  # identity + motion_crop at W = 2 s
    assert (plan.window_frames, plan.stride_frames, plan.aligned) == (48, 25, True)
    assert plan.window_s == pytest.approx(1.92) and plan.stride_s == pytest.approx(1.0)
    for m in range(5):
        now, following = plan.targets(m), plan.targets(m + 1)
        for i in (0, 1):  # window m+1's first half is exactly window m's second half, in both sampling grids
            assert following[i][:8] == now[i][8:]
            assert not set(following[i][8:]) & plan.positions(m)
    assert _shared(plan) == [8, 8]
    asked = WindowPlan.build(25.0, 2.0, 0.5, 16, [False, True])
    assert (asked.window_frames, asked.stride_frames, _shared(asked)) == (50, 25, [0, 2])  # steps of 49/15, 48/15
    assert plan.describe() == {
        "window_s": 1.92,
        "window_frames": 48,
        "requested_frames": 50,
        "stride_s": 1.0,
        "stride_frames": 25,
        "aligned": True,
        "positions_shared_with_earlier_windows": [8, 8],
    }


def test_the_grid_most_encodes_use_shares_most_and_motion_streams_win_a_tie():
    # T = 6 at 10 fps, 2 s: no plan nearby lets both grids share their most (3 of 6)
    tie = WindowPlan.build(10.0, 2.0, 0.5, 6, [False, True], align=True)
    plain_heavy = WindowPlan.build(10.0, 2.0, 0.5, 6, [False, True], align=True, encodes=[4, 1])  # tiles: 4 regions
    assert _shared(tie) == [2, 3] and _shared(plain_heavy) == [3, 2]
    assert (plain_heavy.window_frames, plain_heavy.stride_frames) == (20, 11)
    with pytest.raises(ValueError, match="encodes"):
        WindowPlan.build(25.0, 2.0, 0.5, 16, [False, True], align=True, encodes=[1])
