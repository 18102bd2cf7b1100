"""Deterministic synthetic violence dataset: real .avi files in the RWF-2000 layout.

Stick figures (``video.stick_figures``) act out the scenes of ``video.scenes``
over textured, noisy backgrounds with drifting light. Camera noise, flicker and
light drift keep every pixel changing, so frame differencing alone sees mostly
noise. This module renders clips, writes them and lays out the dataset.

Clips come from cameras, as real footage does: a camera fixes the view (its
background), the frame size, the frame rate and the lighting (gain, tint, sensor
noise, flicker, a shaky mount) of every clip it records, and records both
classes. ``groups.csv`` beside the dataset (clip, label, source_group = camera)
lets the audit split by camera, and every camera lies wholly in ``train/`` or in
``val/``, so the clips scored at the end come from cameras never seen in training.

Every clip and camera is drawn from its own seeded generator, so the same
``seed`` gives byte-for-byte the same frames, and a finished dataset is reused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from nexara_lib.io import atomic_path, write_text_atomic
from nexara_lib.video.scenes import SCENES, bystander
from nexara_lib.video.stick_figures import draw_ball, draw_figure, luma, visible_color

GENERATOR_VERSION = 2  # bump whenever the rendered content changes, so old datasets regenerate (2: cameras)
VIOLENT_SCENARIOS = ("punch", "brawl", "kick")
NONVIOLENT_SCENARIOS = ("running", "dancing", "sport", "hugging", "walking")
FRAME_SIZES = (
    (112, 84),
    (128, 96),
    (160, 120),
    (192, 144),
)  # (width, height), small on purpose: fast to write and read
FPS_CHOICES = (15, 20, 25, 30)
DURATION_RANGE_S = (2.0, 4.0)
VAL_FRACTION = 0.2  # share of the cameras (and so of each class) written to val/, the rest to train/
CLIPS_PER_CAMERA = 6  # about this many clips per camera, half of each class (real CCTV sets: a median of ~5)
MIN_CAMERAS = 4  # at least this many cameras while every one can hold both classes (grouped splits need several)
MARKER_NAME = ".complete.json"  # written last: its presence means every clip is on disk
GROUPS_NAME = "groups.csv"  # clip (relative path), label, source_group (the camera): read by the audit
SCRATCH_NAME = ".partial"  # clips are written here first, then moved into place
CLASS_DIRS = {1: "Fight", 0: "NonFight"}
LISTING_COLUMNS = ["path", "split", "label", "class_name", "scenario", "camera", "width", "height", "fps", "frames"]


@dataclasses.dataclass(frozen=True)
class Camera:
    """What a camera fixes for every clip it records; its look (background, lighting) is drawn from ``seed``."""

    name: str  # e.g. 'cam07': the clips' source group
    width: int
    height: int
    fps: int
    seed: int


# --------------------------------------------------------------------------- rendering
def _background(rng, width, height):
    """Textured static backdrop: low-frequency colour blotches, a floor, a few boxes, fine grain."""
    base = rng.uniform(40, 200, size=3)
    blotches = cv2.resize(
        rng.uniform(-40, 40, size=(4, 5, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
    )
    bg = np.clip(base + blotches, 0, 255).astype(np.float32)
    horizon = int(height * rng.uniform(0.45, 0.65))
    bg[horizon:] = bg[horizon:] * rng.uniform(0.5, 0.9) + rng.uniform(0, 40, size=3)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = int(rng.uniform(0, width)), int(rng.uniform(0, horizon))
        x1, y1 = x0 + int(rng.uniform(0.05, 0.3) * width), y0 + int(rng.uniform(0.1, 0.4) * height)
        cv2.rectangle(bg, (x0, y0), (x1, y1), tuple(float(v) for v in rng.uniform(20, 235, size=3)), -1)
    grain = cv2.GaussianBlur(rng.normal(0, 12, size=(height, width, 3)).astype(np.float32), (3, 3), 0)
    return np.clip(bg + grain, 0, 255).astype(np.uint8)


def _camera_look(rng, width, height) -> dict:
    """What a camera gives every clip it records: its view (the backdrop) and its lighting and sensor."""
    return {
        "background": _background(rng, width, height),
        "gain": rng.uniform(0.6, 1.25),
        "tint": rng.uniform(0.85, 1.15, size=3).astype(np.float32),
        "flicker": rng.uniform(0.0, 0.03),
        "sigma": rng.uniform(2.0, 8.0),
        "shake": rng.uniform(0.5, 2.0) if rng.random() < 0.35 else 0.0,
    }


def render_clip(
    scenario: str, width: int, height: int, fps: int, n_frames: int, seed: int, camera_seed: int | None = None
) -> np.ndarray:
    """Render one synthetic clip.

    Args:
        scenario: one of VIOLENT_SCENARIOS or NONVIOLENT_SCENARIOS.
        width, height: frame size in pixels (at least 32 x 32).
        fps: frames per second; motion is defined in seconds, so speeds match across fps.
        n_frames: number of frames to render (at least 2).
        seed: same seed -> identical frames.
        camera_seed: the camera's seed: clips with the same one share its background and lighting (gain,
            tint, sensor noise, flicker, shake), each with its own slow light drift; None draws a camera
            of the clip's own.

    Returns:
        (n_frames, height, width, 3) uint8 frames in BGR order (as OpenCV writes them).
    """
    if scenario not in SCENES:
        raise ValueError(f"render_clip: unknown scenario {scenario!r}; choose one of {sorted(SCENES)}")
    if width < 32 or height < 32 or fps <= 0 or n_frames < 2:
        raise ValueError(
            f"render_clip: need width, height >= 32, fps > 0 and n_frames >= 2; got width={width}, "
            f"height={height}, fps={fps}, n_frames={n_frames}"
        )
    rng = np.random.default_rng(seed)
    duration = n_frames / fps
    look = _camera_look(rng if camera_seed is None else np.random.default_rng(camera_seed), width, height)
    background = look["background"]
    background_luma = float(luma(background.reshape(-1, 3).mean(0)))
    scene = SCENES[scenario](rng, width, height, duration)
    # Bystanders: calm people around a fight or a hug (they may walk through it).
    extras = (
        [bystander(rng, width, height) for _ in range(rng.integers(0, 3))]
        if scenario in VIOLENT_SCENARIOS + ("hugging",)
        else []
    )

    # Camera: its gain (a little different from clip to clip: time of day) drifts slowly, flickers a little,
    # and the sensor adds noise. Noise comes from a small pool of fields shifted each frame: never static,
    # cheap to draw.
    gain0 = look["gain"] * rng.uniform(0.9, 1.1)
    tint, flicker, sigma, shake = look["tint"], look["flicker"], look["sigma"], look["shake"]
    drift_amp, drift_freq, drift_phase = rng.uniform(0.0, 0.15), rng.uniform(0.1, 0.6), rng.uniform(0, 2 * math.pi)
    pad = 8
    noise_pool = rng.normal(0.0, sigma, size=(3, height + pad, width + pad, 3)).astype(np.float32)
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
            colors = (visible_color(shirt, background_luma), visible_color(trousers, background_luma), skin)
            draw_figure(canvas, pose._replace(colors=colors))
        for ball in balls:
            draw_ball(canvas, ball)
        if shake:
            # Hand-held camera: smooth global sway, the same for both classes.
            sx = shake * (
                math.sin(2 * math.pi * shake_freqs[0] * t + shake_phases[0])
                + 0.5 * math.sin(2 * math.pi * shake_freqs[1] * t + shake_phases[1])
            )
            sy = (
                shake
                * 0.6
                * (
                    math.sin(2 * math.pi * shake_freqs[2] * t + shake_phases[2])
                    + 0.5 * math.sin(2 * math.pi * shake_freqs[3] * t + shake_phases[3])
                )
            )
            canvas = cv2.warpAffine(
                canvas,
                np.array([[1, 0, sx], [0, 1, sy]], dtype=np.float32),
                (width, height),
                borderMode=cv2.BORDER_REFLECT,
            )
        gain = gain0 * (
            1 + drift_amp * math.sin(2 * math.pi * drift_freq * t + drift_phase) + flicker * rng.standard_normal()
        )
        oy, ox = rng.integers(0, pad, size=2)
        noise = noise_pool[rng.integers(0, len(noise_pool)), oy : oy + height, ox : ox + width]
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
            f"dtype {frames.dtype} for {path}"
        )
    height, width = frames.shape[1:3]
    with atomic_path(path, tmp_dir=scratch_dir, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), float(fps), (width, height))
        if not writer.isOpened():
            raise ValueError(
                f"write_clip: OpenCV could not open a MJPG writer for {tmp}; check that the folder is writable"
            )
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OSError(
                f"write_clip: OpenCV wrote nothing to {tmp}; is the MJPG codec available in this OpenCV build?"
            )


# --------------------------------------------------------------------------- dataset
def plan_cameras(n_clips: int, seed: int = 0) -> list[Camera]:
    """The cameras of a dataset of ``n_clips``: about ``CLIPS_PER_CAMERA`` clips each, at least ``MIN_CAMERAS``,
    never more than the clips of the smaller class (every camera records both classes)."""
    n_cameras = max(1, min(n_clips // 2, max(MIN_CAMERAS, n_clips // CLIPS_PER_CAMERA)))
    cameras = []
    for number in range(n_cameras):
        camera_seed = int(np.random.SeedSequence([seed, 1, number]).generate_state(1)[0])
        rng = np.random.default_rng(camera_seed)
        width, height = FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
        fps = int(FPS_CHOICES[rng.integers(len(FPS_CHOICES))])
        cameras.append(Camera(f"cam{number:02d}", int(width), int(height), fps, camera_seed))
    return cameras


def plan_dataset(out_dir: str | os.PathLike, n_clips: int, seed: int = 0) -> pd.DataFrame:
    """Decide every clip (split, class, scenario, camera, size, fps, length) without rendering.

    Classes are balanced (the odd clip, if any, is non-violent) and scenarios cycle within each class.
    Each class is dealt to the cameras (``plan_cameras``) in turn, so every camera records both classes
    in about equal numbers and most scenarios; VAL_FRACTION of the cameras (at least one when there are
    two or more) write all their clips to val/, the others to train/.

    Args:
        out_dir: dataset root; paths in the listing are under it.
        n_clips: total number of clips (at least 2).
        seed: dataset seed.

    Returns:
        The listing (LISTING_COLUMNS) plus ``clip_seed`` and ``camera_seed`` columns used to render each clip.
    """
    if isinstance(n_clips, bool) or not isinstance(n_clips, (int, np.integer)) or n_clips < 2:
        raise ValueError(f"synthetic dataset: n_clips must be an integer >= 2 (one clip per class), got {n_clips!r}")
    out_dir = Path(out_dir).resolve()
    cameras = plan_cameras(int(n_clips), seed)
    n_val = max(1, int(round(VAL_FRACTION * len(cameras)))) if len(cameras) >= 2 else 0
    val_cameras = {camera.name for camera in cameras[len(cameras) - n_val :]}
    rows: list[dict] = []
    n_fight = n_clips // 2
    for label, count, scenarios in ((1, n_fight, VIOLENT_SCENARIOS), (0, n_clips - n_fight, NONVIOLENT_SCENARIOS)):
        for k in range(count):
            index = len(rows)
            clip_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
            clip_rng = np.random.default_rng(clip_seed)
            camera = cameras[k % len(cameras)]
            frames = int(round(clip_rng.uniform(*DURATION_RANGE_S) * camera.fps))
            scenario = scenarios[k % len(scenarios)]
            split = "val" if camera.name in val_cameras else "train"
            name = f"{CLASS_DIRS[label].lower()}_{k:04d}_{scenario}.avi"
            rows.append(
                dict(
                    path=str(out_dir / split / CLASS_DIRS[label] / name),
                    split=split,
                    label=label,
                    class_name=CLASS_DIRS[label],
                    scenario=scenario,
                    camera=camera.name,
                    width=camera.width,
                    height=camera.height,
                    fps=camera.fps,
                    frames=frames,
                    clip_seed=clip_seed,
                    camera_seed=camera.seed,
                )
            )
    return pd.DataFrame(rows)


def groups_table(listing: pd.DataFrame, out_dir: str | os.PathLike) -> pd.DataFrame:
    """The dataset's ``groups.csv``: clip (path relative to ``out_dir``), label, source_group (the camera)."""
    root = Path(out_dir).resolve()
    return pd.DataFrame(
        {
            "clip": [Path(p).relative_to(root).as_posix() for p in listing["path"]],
            "label": listing["label"].astype(int),
            "source_group": listing["camera"],
        }
    )


def _marker(n_clips, seed):
    return {"n_clips": int(n_clips), "seed": int(seed), "generator_version": GENERATOR_VERSION}


def _is_generated_name(name: str) -> bool:
    """True for file names this generator writes (fight_0003_punch.avi, nonfight_0012_sport.avi)."""
    return re.fullmatch(r"(fight|nonfight)_\d{4,}_[a-z]+\.avi", name) is not None


def generate_synthetic_dataset(
    out_dir: str | os.PathLike, n_clips: int, seed: int = 0, progress: bool = False
) -> pd.DataFrame:
    """Write a synthetic violence dataset in the RWF-2000 layout, or reuse a finished one.

    Layout: ``<out_dir>/{train,val}/{Fight,NonFight}/*.avi`` (MJPG) and ``<out_dir>/groups.csv``
    (clip, label, source_group = camera; ``groups_table``). A marker ``<out_dir>/.complete.json``
    is written last; when it matches n_clips, seed and GENERATOR_VERSION and every file is
    present, nothing is rewritten.
    Clips left by an earlier run with other settings are replaced; any other
    .avi in the layout folders is an error (the folder is not ours to clean).

    Args:
        out_dir: dataset root (created if missing).
        n_clips: total clips, half violent (the odd one, if any, non-violent).
        seed: dataset seed; same seed -> identical frames.
        progress: show a progress bar on stderr.

    Returns:
        DataFrame with columns path, split, label, class_name, scenario, camera,
        width, height, fps, frames (one row per clip).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"generate_synthetic_dataset: seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"generate_synthetic_dataset: out_dir {out_dir} is a file; pass a folder path")
    plan = plan_dataset(out_dir, n_clips, seed)
    listing = plan[LISTING_COLUMNS].copy()
    marker_path, groups_path = out_dir / MARKER_NAME, out_dir / GROUPS_NAME
    if marker_path.is_file():
        try:
            found = json.loads(marker_path.read_text())
        except (OSError, json.JSONDecodeError):
            found = None  # unreadable marker: treat as unfinished
        if found == _marker(n_clips, seed) and groups_path.is_file() and all(Path(p).is_file() for p in plan["path"]):
            return listing
        marker_path.unlink()  # another dataset (or files went missing): regenerate below

    planned = set(plan["path"])
    layout_dirs = [out_dir / split / cls for split in ("train", "val") for cls in CLASS_DIRS.values()]
    strays = [p for d in layout_dirs if d.is_dir() for p in sorted(d.glob("*.avi")) if str(p) not in planned]
    foreign = [p for p in strays if not _is_generated_name(p.name)]
    if foreign:
        raise ValueError(
            f"generate_synthetic_dataset: {out_dir} already holds {len(foreign)} video(s) this generator did "
            f"not write (e.g. {foreign[0]}); point out_dir at an empty or synthetic-only folder"
        )
    for stray in strays:
        stray.unlink()  # left by an earlier synthetic dataset with other settings
    for d in layout_dirs:
        d.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / SCRATCH_NAME
    scratch.mkdir(exist_ok=True)

    rows: Iterable[dict] = plan.to_dict("records")
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, total=len(plan), desc="synthetic clips", file=sys.stderr)
    for row in rows:
        spec = (row["scenario"], row["width"], row["height"], row["fps"], row["frames"], row["clip_seed"])
        frames = render_clip(*spec, camera_seed=row["camera_seed"])
        write_clip(row["path"], frames, row["fps"], scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    write_text_atomic(groups_path, groups_table(listing, out_dir).to_csv(index=False))
    write_text_atomic(
        marker_path, json.dumps(_marker(n_clips, seed), indent=2) + "\n"
    )  # written last: the set is complete
    return listing
