"""The scenes of the synthetic clips: who moves how, as a function of time, for every scenario.

Violent clips hold bursts of fast, erratic strikes between two figures: a limb
snaps toward the other figure and back, the hit figure recoils, both bodies jerk
with abrupt reversals. The non-violent clips are chosen to make *how much* moves
useless on its own: running, dancing and a fast ball game move as much as a
fight or more; a hug (people hurrying together and holding on) and calm walking
are the quiet ones. What separates the classes is the shape of motion: smooth,
coherent and periodic versus bursty, opposing and jerky.

``SCENES`` maps each scenario to its factory; every random draw comes from the
clip's own generator, in a fixed order.
"""

from __future__ import annotations

import math

import numpy as np

from nexara_lib.video.stick_figures import Ball, Pose


# --------------------------------------------------------------------------- motion helpers
def _gait(phase: float, stride: float, elbow: float) -> tuple[tuple, tuple]:
    """Arms and legs of a walking/running cycle at a given phase."""
    swing = stride * math.sin(phase)
    legs = ((swing, stride * (1 + math.cos(phase))), (-swing, stride * (1 - math.cos(phase))))
    arms = ((-0.8 * swing, elbow), (0.8 * swing, elbow))
    return arms, legs


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def _random_walk_keys(rng: np.random.Generator, duration: float, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Key times and uniform(-1, 1) values for a piecewise-linear jitter track."""
    times = np.arange(0.0, duration + 2 * step_s, step_s)
    return times, rng.uniform(-1.0, 1.0, size=times.size)


def _colors(rng: np.random.Generator) -> tuple:
    shirt = tuple(int(v) for v in rng.integers(30, 256, size=3))
    trousers = tuple(int(v) for v in rng.integers(20, 200, size=3))
    tone = rng.uniform(0.45, 1.0)
    skin = (int(140 * tone), int(170 * tone), int(215 * tone))
    return shirt, trousers, skin


class _Person:
    """Static attributes of one figure: where it stands, how tall, its colours."""

    def __init__(self, rng, width, height, x=None, depth=None):
        self.depth = rng.uniform(0.0, 1.0) if depth is None else depth
        # Perspective: people further back stand higher in the frame and look smaller.
        self.ground = height * (0.78 + 0.18 * self.depth)
        self.s = height * (0.5 + 0.25 * self.depth)
        self.x = rng.uniform(0.15, 0.85) * width if x is None else x
        self.colors = _colors(rng)

    def pose(self, x, facing, lean, arms, legs, bob=0.0):
        y = self.ground - 0.49 * self.s - bob * self.s
        return Pose(x, y, self.s, facing, lean, arms, legs, self.colors)


def bystander(rng, width, height):
    """A calm walker or a person standing and gesturing; returns pose(t)."""
    person = _Person(rng, width, height)
    if rng.random() < 0.5:
        speed = rng.uniform(0.04, 0.12) * width * rng.choice([-1, 1])
        freq = rng.uniform(1.4, 1.9)
        phase0 = rng.uniform(0, 2 * math.pi)
        start = person.x

        def walker(t):
            arms, legs = _gait(phase0 + 2 * math.pi * freq * t, 0.3, 0.25)
            return person.pose(start + speed * t, 1 if speed > 0 else -1, 0.05, arms, legs)

        return walker
    facing = int(rng.choice([-1, 1]))
    wave_freq = rng.uniform(0.3, 0.8)
    sway = rng.uniform(0.005, 0.02) * person.s

    def stander(t):
        gesture = 0.4 + 0.4 * math.sin(2 * math.pi * wave_freq * t)
        arms = ((gesture, 0.8 + 0.3 * gesture), (0.1, 0.2))
        legs = ((0.08, 0.02), (-0.08, 0.02))
        return person.pose(person.x + sway * math.sin(2 * math.pi * 0.4 * t), facing, 0.0, arms, legs)

    return stander


# --------------------------------------------------------------------------- violent scenes
def _burst_schedule(rng, duration):
    """Intervals of fighting: 1-4 bursts of 0.5-1.2 s covering about 60% of the clip."""
    bursts, t = [], rng.uniform(0.0, 0.5)
    while t < duration - 0.3:
        length = rng.uniform(0.5, 1.2)
        bursts.append((t, min(duration, t + length)))
        t += length + rng.uniform(0.25, 0.8)
    return bursts


def _strike_times(rng, bursts):
    """Erratic strike onsets inside bursts: irregular gaps, never a steady rhythm."""
    times = []
    for start, end in bursts:
        t = start + rng.uniform(0.0, 0.08)
        while t < end:
            times.append(t)
            t += rng.uniform(0.1, 0.25)
    return times


def _strike_profile(tau, extend_s):
    """0 -> 1 in extend_s (a snap), short hold, then a slower retract; 0 outside."""
    if tau < 0:
        return 0.0
    if tau < extend_s:
        return tau / extend_s
    tau -= extend_s + 0.04
    if tau < 0:
        return 1.0
    return max(0.0, 1.0 - tau / 0.12)


def _recoil_profile(tau):
    """A sharp knock-back that eases off over a few hundred milliseconds."""
    if tau < 0:
        return 0.0
    return (1.0 - math.exp(-tau / 0.03)) * math.exp(-tau / 0.25)


def _fight_scene(rng, width, height, duration, kind):
    """Two fighters: one punching, one kicking (and punching), or both trading blows (brawl)."""
    depth = rng.uniform(0.2, 1.0)
    centre = rng.uniform(0.35, 0.65) * width
    a = _Person(rng, width, height, depth=depth)
    b = _Person(rng, width, height, depth=depth + rng.uniform(-0.05, 0.05))
    gap = rng.uniform(0.42, 0.55) * a.s
    left_is_a = rng.random() < 0.5
    home = {id(a): centre + (-gap / 2 if left_is_a else gap / 2), id(b): centre + (gap / 2 if left_is_a else -gap / 2)}
    facing = {id(a): 1 if left_is_a else -1, id(b): -1 if left_is_a else 1}

    bursts = _burst_schedule(rng, duration)
    strikes = []  # (onset, attacker, limb, extend_s, reach)
    for onset in _strike_times(rng, bursts):
        attacker = a if kind != "brawl" or rng.random() < 0.5 else b
        limb = "leg" if kind == "kick" and rng.random() < 0.6 else ("near" if rng.random() < 0.5 else "far")
        strikes.append((onset, attacker, limb, rng.uniform(0.05, 0.09), rng.uniform(0.1, 0.2)))
    jitter = {
        id(p): tuple(_random_walk_keys(rng, duration, rng.uniform(0.05, 0.08)) for _ in range(3)) for p in (a, b)
    }  # x, y and torso-lean tracks
    circling = {id(p): (rng.uniform(0.2, 0.5), rng.uniform(0, 2 * math.pi)) for p in (a, b)}

    def in_burst(t):
        return max((_smoothstep((t - s0) / 0.1) * _smoothstep((s1 - t) / 0.1) for s0, s1 in bursts), default=0.0)

    def fighter(p, other, t):
        f = facing[id(p)]
        level = in_burst(t)
        (tx, vx), (ty, vy), (tl, vl) = jitter[id(p)]
        # Piecewise-linear jitter: constant velocity between keys, abrupt reversals
        # at them; bodies shove, duck and twist erratically while fighting.
        amp = (0.01 + 0.1 * level) * p.s
        x = home[id(p)] + amp * np.interp(t, tx, vx)
        bob = 0.02 * math.sin(2 * math.pi * 2.2 * t) + 0.05 * level * np.interp(t, ty, vy)
        freq, phase = circling[id(p)]
        x += 0.04 * p.s * math.sin(2 * math.pi * freq * t + phase)
        lean = 0.1 + 0.2 * level * np.interp(t, tl, vl)
        guard = (0.5, 2.0)
        arms = [guard, (0.6, 2.1)]
        legs = [(0.2, 0.15), (-0.2, 0.1)]
        for onset, attacker, limb, extend_s, reach in strikes:
            tau = t - onset
            if tau < -0.05 or tau > 0.6:
                continue
            if attacker is p:
                e = _strike_profile(tau, extend_s)
                if e <= 0:
                    continue
                x += f * reach * 0.5 * p.s * e
                if limb == "leg":
                    legs[0] = (0.2 + 1.2 * e, 0.9 * (1 - e) * min(1.0, 3 * e))
                    lean -= 0.3 * e
                else:
                    idx = 0 if limb == "near" else 1
                    arms[idx] = (guard[0] + (1.45 - guard[0]) * e, guard[1] * (1 - e))
                    lean += 0.25 * e
            elif attacker is other:
                # The hit lands when the limb is fully out: knock back away from the attacker.
                r = _recoil_profile(tau - extend_s)
                x -= f * reach * p.s * r * 1.6
                lean -= 0.45 * r
                arms = [(guard[0] + 0.8 * r, guard[1] - 1.5 * r), (0.6 + 1.1 * r, 2.1 - 1.8 * r)]
        return p.pose(x, f, lean, tuple(arms), tuple(legs), bob)

    def scene(t):
        return [fighter(a, b, t), fighter(b, a, t)], []

    return scene


# --------------------------------------------------------------------------- non-violent scenes
def _running_scene(rng, width, height, duration):
    """2-3 people running across, smooth and fast, some crossing each other."""
    runners = []
    count = int(rng.integers(2, 4))
    margin = 0.25 * width  # a running figure reaches about this far from its hip
    span = width + 2 * margin
    for i in range(count):
        person = _Person(rng, width, height)
        speed = rng.uniform(0.6, 1.1) * width * rng.choice([-1, 1])
        # Staggered along the wrap-around track so someone is nearly always in view.
        offset = ((i + rng.uniform(-0.15, 0.15)) / count) * span
        runners.append((person, speed, offset, rng.uniform(2.6, 3.6), rng.uniform(0, 2 * math.pi)))

    def scene(t):
        poses = []
        for person, speed, offset, freq, phase0 in runners:
            # Wrap around outside the frame so the runner keeps crossing the view.
            x = (offset + speed * t) % span - margin
            phase = phase0 + 2 * math.pi * freq * t
            arms, legs = _gait(phase, 0.75, 1.5)
            bob = 0.03 * abs(math.sin(phase))
            poses.append(person.pose(x, 1 if speed > 0 else -1, 0.25, arms, legs, bob))
        return poses, []

    return scene


def _dancing_scene(rng, width, height, duration):
    """1-3 dancers: fast, large, smooth periodic arm and leg motion in place."""
    dancers = []
    count = rng.integers(1, 4)
    for i in range(count):
        person = _Person(rng, width, height, x=width * (i + 1) / (count + 1) + rng.uniform(-0.05, 0.05) * width)
        beat = rng.uniform(1.6, 2.6)
        dancers.append(
            (
                person,
                beat,
                rng.uniform(0, 2 * math.pi),
                rng.choice([0.0, math.pi]),
                int(rng.choice([-1, 1])),
                rng.uniform(0.08, 0.2),
            )
        )

    def scene(t):
        poses = []
        for person, beat, phase0, arm_offset, facing, sway in dancers:
            w = 2 * math.pi * beat * t + phase0
            arms = (
                (1.5 + 1.3 * math.sin(w), 0.7 + 0.5 * math.sin(w + 1.0)),
                (1.5 + 1.3 * math.sin(w + arm_offset), 0.7 + 0.5 * math.sin(w + arm_offset + 1.0)),
            )
            legs = ((0.35 * math.sin(w), 0.3 + 0.3 * math.sin(w)), (-0.35 * math.sin(w), 0.3 - 0.3 * math.sin(w)))
            x = person.x + sway * person.s * math.sin(w / 2)
            bob = 0.04 * abs(math.sin(w))
            poses.append(person.pose(x, facing, 0.15 * math.sin(w / 2), arms, legs, bob))
        return poses, []

    return scene


def _sport_scene(rng, width, height, duration):
    """2-3 players passing a ball fast along an arc, with a smooth throwing swing."""
    count = int(rng.integers(2, 4))
    players = [
        _Person(rng, width, height, x=width * (0.15 + 0.7 * i / (count - 1)) + rng.uniform(-0.05, 0.05) * width)
        for i in range(count)
    ]
    ball_color = tuple(int(v) for v in rng.integers(150, 256, size=3))
    passes, t, holder = [], rng.uniform(0.0, 0.3), int(rng.integers(count))
    while t < duration:
        target = int((holder + rng.integers(1, count)) % count)
        flight = abs(players[target].x - players[holder].x) / (rng.uniform(1.4, 2.4) * width)
        passes.append((t, t + flight, holder, target))
        holder = target
        t += flight + rng.uniform(0.2, 0.5)
    shuffle = [(rng.uniform(0.5, 1.0), rng.uniform(0, 2 * math.pi)) for _ in players]

    def player_x(i, t):
        # Players dart left and right between passes, smoothly (no jerks).
        freq, phase = shuffle[i]
        return players[i].x + 0.3 * players[i].s * math.sin(2 * math.pi * freq * t + phase)

    def hand_point(i, t):
        return player_x(i, t), players[i].ground - 0.8 * players[i].s

    def scene(t):
        poses = []
        for i, p in enumerate(players):
            x = player_x(i, t)
            others = [q.x for q in players if q is not p]
            facing = 1 if np.mean(others) > p.x else -1
            swing = 0.0
            for t0, t1, src, dst in passes:
                if src == i:
                    swing = max(swing, math.sin(math.pi * _smoothstep((t - t0 + 0.15) / 0.3)))
                if dst == i:
                    swing = max(swing, 0.6 * _smoothstep((t - t1 + 0.25) / 0.25) * (1 - _smoothstep((t - t1) / 0.3)))
            arms = ((0.3 + 1.9 * swing, 0.4), (0.3 + 1.2 * swing, 0.5))
            legs = _gait(2 * math.pi * 2.4 * t + shuffle[i][1], 0.35, 0.4)[1]
            poses.append(p.pose(x, facing, 0.05, arms, legs))
        balls = []
        radius = 0.05 * players[0].s
        for t0, t1, src, dst in passes:
            if t0 <= t <= t1:
                u = (t - t0) / (t1 - t0)
                (x0, y0), (x1, y1) = hand_point(src, t0), hand_point(dst, t1)
                arc = 0.25 * height * 4 * u * (1 - u)
                balls.append(Ball(x0 + (x1 - x0) * u, y0 + (y1 - y0) * u - arc, radius, ball_color))
        if not balls:
            # Between passes the ball rests in the holder's hand.
            last = max((p for p in passes if p[1] <= t), key=lambda p: p[1], default=None)
            hx, hy = hand_point(last[3] if last else passes[0][2], t)
            balls.append(Ball(hx, hy, radius, ball_color))
        return poses, balls

    return scene


def _hugging_scene(rng, width, height, duration):
    """Two people run/walk toward each other, embrace, sway and pat: contact without strikes."""
    depth = rng.uniform(0.2, 1.0)
    a = _Person(rng, width, height, depth=depth)
    b = _Person(rng, width, height, depth=depth)
    meet = rng.uniform(0.35, 0.65) * width
    close = 0.3 * a.s
    start_gap = rng.uniform(0.25, 0.45) * width
    speed = rng.uniform(0.3, 0.6) * width  # a brisk, running start: contact after fast motion
    # Ease out: full speed at first, slowing to a stop at contact (people do not
    # crash into a hug), so the gap closes in twice the constant-speed time.
    t_meet = 2 * (start_gap - close) / speed
    pat_freq = rng.uniform(1.5, 3.0)
    sway_freq = rng.uniform(0.4, 0.9)

    def person_at(p, side, t):
        f = 1 if side < 0 else -1
        if t < t_meet:
            gap = close + (start_gap - close) * (1 - t / t_meet) ** 2
            x = meet + side * gap / 2
            phase = 2 * math.pi * (start_gap - gap) / (0.9 * p.s)  # one stride per 0.9 body heights
            slowing = 1 - 0.6 * t / t_meet
            arms, legs = _gait(phase, 0.6 * slowing, 1.2)
            return p.pose(x, f, 0.2 * slowing, arms, legs, 0.03 * slowing * abs(math.sin(phase)))
        k = _smoothstep((t - t_meet) / 0.4)
        sway = 0.04 * p.s * math.sin(2 * math.pi * sway_freq * (t - t_meet))
        x = meet + side * (close / 2) + sway
        pat = 0.25 * math.sin(2 * math.pi * pat_freq * t) * k
        arms = ((0.2 + 1.4 * k, 0.3 + 0.9 * k + pat), (0.2 + 1.6 * k, 0.3 + 1.1 * k))
        legs = ((0.1, 0.05), (-0.1, 0.05))
        return p.pose(x, f, 0.1 + 0.1 * k, arms, legs)

    def scene(t):
        return [person_at(a, -1, t), person_at(b, 1, t)], []

    return scene


def _walking_scene(rng, width, height, duration):
    """Calm: people walking slowly or standing (the quiet end of the negatives)."""
    people = [bystander(rng, width, height) for _ in range(rng.integers(2, 5))]

    def scene(t):
        return [p(t) for p in people], []

    return scene


# scenario -> factory(rng, width, height, duration) returning scene(t) -> (poses, balls) at t seconds.
SCENES = {
    "punch": lambda rng, w, h, d: _fight_scene(rng, w, h, d, "punch"),
    "brawl": lambda rng, w, h, d: _fight_scene(rng, w, h, d, "brawl"),
    "kick": lambda rng, w, h, d: _fight_scene(rng, w, h, d, "kick"),
    "running": _running_scene,
    "dancing": _dancing_scene,
    "sport": _sport_scene,
    "hugging": _hugging_scene,
    "walking": _walking_scene,
}
