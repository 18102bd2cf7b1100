"""Stick figures and balls drawn with OpenCV: the people and things of the synthetic clips.

A figure has a head, a torso and two-segment arms and legs (``Pose``); far limbs are
drawn first and darker. Coordinates carry sub-pixel bits so slow motion stays smooth.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

_SUBPIXEL = 4  # cv2 drawing 'shift': coordinates carry 4 fractional bits so slow motion stays smooth
_SUBPIXEL_SCALE = 1 << _SUBPIXEL


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


def luma(bgr) -> float:
    return 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]


def visible_color(color: tuple, background_luma: float, min_contrast: float = 50.0) -> tuple:
    """Push a clothing colour away from the background brightness so the figure stays visible."""
    if abs(luma(color) - background_luma) >= min_contrast:
        return color
    if background_luma > 128:
        return tuple(int(c * 0.35) for c in color)
    return tuple(int(c + (255 - c) * 0.65) for c in color)


def draw_ball(img: np.ndarray, ball: Ball) -> None:
    cv2.circle(
        img, _fixed((ball.x, ball.y)), int(round(ball.r * _SUBPIXEL_SCALE)), ball.color, -1, cv2.LINE_AA, _SUBPIXEL
    )
