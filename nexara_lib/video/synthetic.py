"""Deterministic synthetic violence dataset: real .avi files in the RWF-2000 layout.

Stick figures (head, torso, two-segment arms and legs) move over textured,
noisy backgrounds with drifting light. Violent clips hold bursts of fast,
erratic strikes between two figures: a limb snaps toward the other figure and
back, the hit figure recoils, both bodies jerk with abrupt reversals. The
non-violent clips are chosen to make *how much* moves useless on its own:
running, dancing and a fast ball game move as much as a fight or more; a hug
(people hurrying together and holding on) and calm walking are the quiet ones.
What separates the classes is the shape of motion: smooth, coherent and
periodic versus bursty, opposing and jerky. Camera noise, flicker and light
drift keep every pixel changing, so frame differencing alone sees mostly noise.

Every clip is drawn from its own seeded generator, so the same ``seed`` gives
byte-for-byte the same frames, and a finished dataset is reused.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd

from nexara_lib.io import atomic_path

GENERATOR_VERSION = 1  # bump whenever the rendered content changes, so old datasets regenerate
VIOLENT_SCENARIOS = ("punch", "brawl", "kick")
NONVIOLENT_SCENARIOS = ("running", "dancing", "sport", "hugging", "walking")
FRAME_SIZES = ((112, 84), (128, 96), (160, 120), (192, 144))  # (width, height), small on purpose: fast to write and read
FPS_CHOICES = (15, 20, 25, 30)
DURATION_RANGE_S = (2.0, 4.0)
VAL_FRACTION = 0.2  # share of each class written to val/, the rest to train/
MARKER_NAME = ".complete.json"  # written last: its presence means every clip is on disk
SCRATCH_NAME = ".partial"  # clips are written here first, then moved into place
CLASS_DIRS = {1: "Fight", 0: "NonFight"}
LISTING_COLUMNS = ["path", "split", "label", "class_name", "scenario", "width", "height", "fps", "frames"]

_SUBPIXEL = 4  # cv2 drawing 'shift': coordinates carry 4 fractional bits so slow motion stays smooth
_SUBPIXEL_SCALE = 1 << _SUBPIXEL


# --------------------------------------------------------------------------- figures
class Pose(NamedTuple):
    """One stick figure in one frame.

    x, y: hip position in pixels; s: body height in pixels; facing: +1 right,
    -1 left; lean: torso tilt toward the facing side (rad); arms, legs:
    ((upper, bend), (upper, bend)) angles in rad, near limb first. Limb angle
    0 hangs straight down, pi/2 points forward, pi points up.
    """
    x: float
    y: float
    s: float
    facing: int
    lean: float
    arms: tuple
    legs: tuple
    colors: tuple  # (shirt, trousers, skin) BGR


class Ball(NamedTuple):
    x: float
    y: float
    r: float
    color: tuple


def _direction(angle: float, facing: int) -> tuple[float, float]:
    return facing * math.sin(angle), math.cos(angle)


def _fixed(point: tuple[float, float]) -> tuple[int, int]:
    return int(round(point[0] * _SUBPIXEL_SCALE)), int(round(point[1] * _SUBPIXEL_SCALE))


def _segment(img, a, b, color, thickness):
    cv2.line(img, _fixed(a), _fixed(b), color, thickness, cv2.LINE_AA, _SUBPIXEL)


def draw_figure(img: np.ndarray, pose: Pose) -> None:
    """Draw one stick figure onto a BGR uint8 image, in place.

    Args:
        img: (H, W, 3) uint8 canvas.
        pose: where the figure is and how its limbs are bent.
    """
    s, f = pose.s, pose.facing
    shirt, trousers, skin = pose.colors
    far_shade = tuple(int(c * 0.7) for c in shirt)
    torso_dir = (f * math.sin(pose.lean), -math.cos(pose.lean))
    hip = (pose.x, pose.y)
    shoulder = (hip[0] + 0.32 * s * torso_dir[0], hip[1] + 0.32 * s * torso_dir[1])
    head = (shoulder[0] + 0.15 * s * torso_dir[0], shoulder[1] + 0.15 * s * torso_dir[1])
    limb = max(1, int(round(0.05 * s)))

    def leg(h1, bend):
        d1, d2 = _direction(h1, f), _direction(h1 - bend, f)
        knee = (hip[0] + 0.25 * s * d1[0], hip[1] + 0.25 * s * d1[1])
        foot = (knee[0] + 0.24 * s * d2[0], knee[1] + 0.24 * s * d2[1])
        return knee, foot

    def arm(a1, bend):
        d1, d2 = _direction(a1, f), _direction(a1 + bend, f)
        elbow = (shoulder[0] + 0.19 * s * d1[0], shoulder[1] + 0.19 * s * d1[1])
        hand = (elbow[0] + 0.18 * s * d2[0], elbow[1] + 0.18 * s * d2[1])
        return elbow, hand

    # Far limbs first and darker, so the near ones overlap them like a body would.
    for (h1, bend), color in ((pose.legs[1], tuple(int(c * 0.7) for c in trousers)), (pose.legs[0], trousers)):
        knee, foot = leg(h1, bend)
        _segment(img, hip, knee, color, limb + 1)
        _segment(img, knee, foot, color, limb)
    elbow, hand = arm(*pose.arms[1])
    _segment(img, shoulder, elbow, far_shade, limb)
    _segment(img, elbow, hand, far_shade, limb)
    _segment(img, hip, shoulder, shirt, max(2, int(round(0.1 * s))))
    elbow, hand = arm(*pose.arms[0])
    _segment(img, shoulder, elbow, shirt, limb)
    _segment(img, elbow, hand, skin, limb)
    radius = int(round(0.075 * s * _SUBPIXEL_SCALE))
    cv2.circle(img, _fixed(head), radius, skin, -1, cv2.LINE_AA, _SUBPIXEL)


def _luma(bgr) -> float:
    return 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]


def _visible(color: tuple, background_luma: float, min_contrast: float = 50.0) -> tuple:
    """Push a clothing colour away from the background brightness so the figure stays visible."""
    if abs(_luma(color) - background_luma) >= min_contrast:
        return color
    if background_luma > 128:
        return tuple(int(c * 0.35) for c in color)
    return tuple(int(c + (255 - c) * 0.65) for c in color)


def _draw_ball(img: np.ndarray, ball: Ball) -> None:
    cv2.circle(img, _fixed((ball.x, ball.y)), int(round(ball.r * _SUBPIXEL_SCALE)), ball.color, -1,
               cv2.LINE_AA, _SUBPIXEL)


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


def _bystander(rng, width, height):
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
    jitter = {id(p): tuple(_random_walk_keys(rng, duration, rng.uniform(0.05, 0.08)) for _ in range(3))
              for p in (a, b)}  # x, y and torso-lean tracks
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
        dancers.append((person, beat, rng.uniform(0, 2 * math.pi), rng.choice([0.0, math.pi]),
                        int(rng.choice([-1, 1])), rng.uniform(0.08, 0.2)))

    def scene(t):
        poses = []
        for person, beat, phase0, arm_offset, facing, sway in dancers:
            w = 2 * math.pi * beat * t + phase0
            arms = ((1.5 + 1.3 * math.sin(w), 0.7 + 0.5 * math.sin(w + 1.0)),
                    (1.5 + 1.3 * math.sin(w + arm_offset), 0.7 + 0.5 * math.sin(w + arm_offset + 1.0)))
            legs = ((0.35 * math.sin(w), 0.3 + 0.3 * math.sin(w)), (-0.35 * math.sin(w), 0.3 - 0.3 * math.sin(w)))
            x = person.x + sway * person.s * math.sin(w / 2)
            bob = 0.04 * abs(math.sin(w))
            poses.append(person.pose(x, facing, 0.15 * math.sin(w / 2), arms, legs, bob))
        return poses, []
    return scene


def _sport_scene(rng, width, height, duration):
    """2-3 players passing a ball fast along an arc, with a smooth throwing swing."""
    count = int(rng.integers(2, 4))
    players = [_Person(rng, width, height, x=width * (0.15 + 0.7 * i / (count - 1)) + rng.uniform(-0.05, 0.05) * width)
               for i in range(count)]
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
    people = [_bystander(rng, width, height) for _ in range(rng.integers(2, 5))]

    def scene(t):
        return [p(t) for p in people], []
    return scene


# scenario -> factory(rng, width, height, duration) returning scene(t) -> (poses, balls) at t seconds.
_SCENES = {
    "punch": lambda rng, w, h, d: _fight_scene(rng, w, h, d, "punch"),
    "brawl": lambda rng, w, h, d: _fight_scene(rng, w, h, d, "brawl"),
    "kick": lambda rng, w, h, d: _fight_scene(rng, w, h, d, "kick"),
    "running": _running_scene,
    "dancing": _dancing_scene,
    "sport": _sport_scene,
    "hugging": _hugging_scene,
    "walking": _walking_scene,
}


# --------------------------------------------------------------------------- rendering
def _background(rng, width, height):
    """Textured static backdrop: low-frequency colour blotches, a floor, a few boxes, fine grain."""
    base = rng.uniform(40, 200, size=3)
    blotches = cv2.resize(rng.uniform(-40, 40, size=(4, 5, 3)).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)
    bg = np.clip(base + blotches, 0, 255).astype(np.float32)
    horizon = int(height * rng.uniform(0.45, 0.65))
    bg[horizon:] = bg[horizon:] * rng.uniform(0.5, 0.9) + rng.uniform(0, 40, size=3)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = int(rng.uniform(0, width)), int(rng.uniform(0, horizon))
        x1, y1 = x0 + int(rng.uniform(0.05, 0.3) * width), y0 + int(rng.uniform(0.1, 0.4) * height)
        cv2.rectangle(bg, (x0, y0), (x1, y1), tuple(float(v) for v in rng.uniform(20, 235, size=3)), -1)
    grain = cv2.GaussianBlur(rng.normal(0, 12, size=(height, width, 3)).astype(np.float32), (3, 3), 0)
    return np.clip(bg + grain, 0, 255).astype(np.uint8)


def render_clip(scenario: str, width: int, height: int, fps: int, n_frames: int, seed: int) -> np.ndarray:
    """Render one synthetic clip.

    Args:
        scenario: one of VIOLENT_SCENARIOS or NONVIOLENT_SCENARIOS.
        width, height: frame size in pixels (at least 32 x 32).
        fps: frames per second; motion is defined in seconds, so speeds match across fps.
        n_frames: number of frames to render (at least 2).
        seed: same seed -> identical frames.

    Returns:
        (n_frames, height, width, 3) uint8 frames in BGR order (as OpenCV writes them).
    """
    if scenario not in _SCENES:
        raise ValueError(f"render_clip: unknown scenario {scenario!r}; choose one of {sorted(_SCENES)}")
    if width < 32 or height < 32 or fps <= 0 or n_frames < 2:
        raise ValueError(
            f"render_clip: need width, height >= 32, fps > 0 and n_frames >= 2; got width={width}, "
            f"height={height}, fps={fps}, n_frames={n_frames}")
    rng = np.random.default_rng(seed)
    duration = n_frames / fps
    background = _background(rng, width, height)
    background_luma = float(_luma(background.reshape(-1, 3).mean(0)))
    scene = _SCENES[scenario](rng, width, height, duration)
    # Bystanders: calm people around a fight or a hug (they may walk through it).
    extras = [_bystander(rng, width, height) for _ in range(rng.integers(0, 3))] \
        if scenario in VIOLENT_SCENARIOS + ("hugging",) else []

    # Camera: gain drifts slowly, flickers a little, and the sensor adds noise.
    # Noise comes from a small pool of fields shifted each frame: never static, cheap to draw.
    gain0 = rng.uniform(0.6, 1.25)
    tint = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    drift_amp, drift_freq, drift_phase = rng.uniform(0.0, 0.15), rng.uniform(0.1, 0.6), rng.uniform(0, 2 * math.pi)
    flicker = rng.uniform(0.0, 0.03)
    sigma = rng.uniform(2.0, 8.0)
    pad = 8
    noise_pool = rng.normal(0.0, sigma, size=(3, height + pad, width + pad, 3)).astype(np.float32)
    shake = rng.uniform(0.5, 2.0) if rng.random() < 0.35 else 0.0
    shake_freqs = rng.uniform(0.5, 2.5, size=4)
    shake_phases = rng.uniform(0, 2 * math.pi, size=4)

    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for i in range(n_frames):
        t = i / fps
        canvas = background.copy()
        poses, balls = scene(t)
        poses = poses + [e(t) for e in extras]
        for pose in sorted(poses, key=lambda p: p.y + 0.49 * p.s):  # far (higher up) first
            shirt, trousers, skin = pose.colors
            colors = (_visible(shirt, background_luma), _visible(trousers, background_luma), skin)
            draw_figure(canvas, pose._replace(colors=colors))
        for ball in balls:
            _draw_ball(canvas, ball)
        if shake:
            # Hand-held camera: smooth global sway, the same for both classes.
            sx = shake * (math.sin(2 * math.pi * shake_freqs[0] * t + shake_phases[0])
                          + 0.5 * math.sin(2 * math.pi * shake_freqs[1] * t + shake_phases[1]))
            sy = shake * 0.6 * (math.sin(2 * math.pi * shake_freqs[2] * t + shake_phases[2])
                                + 0.5 * math.sin(2 * math.pi * shake_freqs[3] * t + shake_phases[3]))
            canvas = cv2.warpAffine(canvas, np.float32([[1, 0, sx], [0, 1, sy]]), (width, height),
                                    borderMode=cv2.BORDER_REFLECT)
        gain = gain0 * (1 + drift_amp * math.sin(2 * math.pi * drift_freq * t + drift_phase)
                        + flicker * rng.standard_normal())
        oy, ox = rng.integers(0, pad, size=2)
        noise = noise_pool[rng.integers(0, len(noise_pool)), oy:oy + height, ox:ox + width]
        frame = canvas.astype(np.float32) * (gain * tint) + noise
        np.clip(frame, 0, 255, out=frame)
        frames[i] = frame.astype(np.uint8)
    return frames


def write_clip(path: str | os.PathLike, frames: np.ndarray, fps: int, scratch_dir: str | os.PathLike) -> None:
    """Write BGR frames to an MJPG .avi, atomically (scratch file, then os.replace).

    Args:
        path: final .avi path.
        frames: (N, H, W, 3) uint8 BGR frames.
        fps: frame rate stored in the container.
        scratch_dir: folder on the same filesystem for the temporary file.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(
            f"write_clip: frames must be a non-empty (N, H, W, 3) uint8 BGR array, got shape {frames.shape} "
            f"dtype {frames.dtype} for {path}")
    height, width = frames.shape[1:3]
    with atomic_path(path, tmp_dir=scratch_dir, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (width, height))
        if not writer.isOpened():
            raise ValueError(f"write_clip: OpenCV could not open a MJPG writer for {tmp}; check that the folder is writable")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OSError(f"write_clip: OpenCV wrote nothing to {tmp}; is the MJPG codec available in this OpenCV build?")


# --------------------------------------------------------------------------- dataset
def plan_dataset(out_dir: str | os.PathLike, n_clips: int, seed: int = 0) -> pd.DataFrame:
    """Decide every clip (split, class, scenario, size, fps, length) without rendering.

    Classes are balanced (the odd clip, if any, is non-violent), scenarios cycle
    within each class, and VAL_FRACTION of each class (at least one clip when
    the class has two or more) goes to val/, spread over the scenarios.

    Args:
        out_dir: dataset root; paths in the listing are under it.
        n_clips: total number of clips (at least 2).
        seed: dataset seed.

    Returns:
        The listing (LISTING_COLUMNS) plus a ``clip_seed`` column used to render each clip.
    """
    if isinstance(n_clips, bool) or not isinstance(n_clips, (int, np.integer)) or n_clips < 2:
        raise ValueError(f"synthetic dataset: n_clips must be an integer >= 2 (one clip per class), got {n_clips!r}")
    out_dir = Path(out_dir).resolve()
    rows = []
    n_fight = n_clips // 2
    for label, count, scenarios in ((1, n_fight, VIOLENT_SCENARIOS), (0, n_clips - n_fight, NONVIOLENT_SCENARIOS)):
        n_val = max(1, int(round(VAL_FRACTION * count))) if count >= 2 else 0
        # Scenarios cycle with k, so the last n_val clips of a class spread over
        # its scenarios: val is stratified by scenario, not only by class.
        val_members = set(range(count - n_val, count))
        for k in range(count):
            index = len(rows)
            clip_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
            clip_rng = np.random.default_rng(clip_seed)
            width, height = FRAME_SIZES[clip_rng.integers(len(FRAME_SIZES))]
            fps = int(FPS_CHOICES[clip_rng.integers(len(FPS_CHOICES))])
            frames = int(round(clip_rng.uniform(*DURATION_RANGE_S) * fps))
            scenario = scenarios[k % len(scenarios)]
            split = "val" if k in val_members else "train"
            name = f"{CLASS_DIRS[label].lower()}_{k:04d}_{scenario}.avi"
            rows.append(dict(path=str(out_dir / split / CLASS_DIRS[label] / name), split=split, label=label,
                             class_name=CLASS_DIRS[label], scenario=scenario, width=int(width),
                             height=int(height), fps=fps, frames=frames, clip_seed=clip_seed))
    return pd.DataFrame(rows)


def _marker(n_clips, seed):
    return {"n_clips": int(n_clips), "seed": int(seed), "generator_version": GENERATOR_VERSION}


def _is_generated_name(name: str) -> bool:
    """True for file names this generator writes (fight_0003_punch.avi, nonfight_0012_sport.avi)."""
    return re.fullmatch(r"(fight|nonfight)_\d{4,}_[a-z]+\.avi", name) is not None


def generate_synthetic_dataset(out_dir: str | os.PathLike, n_clips: int, seed: int = 0,
                               progress: bool = False) -> pd.DataFrame:
    """Write a synthetic violence dataset in the RWF-2000 layout, or reuse a finished one.

    Layout: ``<out_dir>/{train,val}/{Fight,NonFight}/*.avi`` (MJPG). A marker
    ``<out_dir>/.complete.json`` is written last; when it matches n_clips, seed
    and GENERATOR_VERSION and every file is present, nothing is rewritten.
    Clips left by an earlier run with other settings are replaced; any other
    .avi in the layout folders is an error (the folder is not ours to clean).

    Args:
        out_dir: dataset root (created if missing).
        n_clips: total clips, half violent (the odd one, if any, non-violent).
        seed: dataset seed; same seed -> identical frames.
        progress: show a progress bar on stderr.

    Returns:
        DataFrame with columns path, split, label, class_name, scenario,
        width, height, fps, frames (one row per clip).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"generate_synthetic_dataset: seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"generate_synthetic_dataset: out_dir {out_dir} is a file; pass a folder path")
    plan = plan_dataset(out_dir, n_clips, seed)
    listing = plan[LISTING_COLUMNS].copy()
    marker_path = out_dir / MARKER_NAME
    if marker_path.is_file():
        try:
            found = json.loads(marker_path.read_text())
        except (OSError, json.JSONDecodeError):
            found = None  # unreadable marker: treat as unfinished
        if found == _marker(n_clips, seed) and all(Path(p).is_file() for p in plan["path"]):
            return listing
        marker_path.unlink()  # another dataset (or files went missing): regenerate below

    planned = set(plan["path"])
    layout_dirs = [out_dir / split / cls for split in ("train", "val") for cls in CLASS_DIRS.values()]
    strays = [p for d in layout_dirs if d.is_dir() for p in sorted(d.glob("*.avi")) if str(p) not in planned]
    foreign = [p for p in strays if not _is_generated_name(p.name)]
    if foreign:
        raise ValueError(
            f"generate_synthetic_dataset: {out_dir} already holds {len(foreign)} video(s) this generator did "
            f"not write (e.g. {foreign[0]}); point out_dir at an empty or synthetic-only folder")
    for stray in strays:
        stray.unlink()  # left by an earlier synthetic dataset with other settings
    for d in layout_dirs:
        d.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / SCRATCH_NAME
    scratch.mkdir(exist_ok=True)

    rows = plan.itertuples(index=False)
    if progress:
        from tqdm.auto import tqdm
        rows = tqdm(rows, total=len(plan), desc="synthetic clips", file=sys.stderr)
    for row in rows:
        frames = render_clip(row.scenario, row.width, row.height, row.fps, row.frames, row.clip_seed)
        write_clip(row.path, frames, row.fps, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    marker_path.write_text(json.dumps(_marker(n_clips, seed), indent=2) + "\n")
    return listing
