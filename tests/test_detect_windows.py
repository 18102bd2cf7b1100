"""Windows sampled as training sampled clips: offsets, nearest-by-timestamp picks, next frames, bounded memory."""

import numpy as np
import pytest

from nexara_lib.deploy.windows import WindowPlan, WindowSampler
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
