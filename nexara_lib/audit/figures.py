"""Figures of notebook 01: clips per class (``class_balance_figure``), duration, frame rate and
resolution (``duration_figure``) and sample frames per class (``frame_grid_figure``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nexara_lib.audit.discover import SPLITS
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.video.frames import read_frames, sample_frame_indices
from nexara_lib.video.reader import VideoReadError


def _plain(text: str, limit: int = 48) -> str:
    """Title text shown literally: '$' would start matplotlib mathtext."""
    text = str(text)
    if len(text) > limit:
        text = "..." + text[-(limit - 3) :]
    return text.replace("$", r"\$")


def _class_bars(ax, df: pd.DataFrame, by: str, title: str) -> None:
    table = df.groupby([by, "label"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    if by == "split":
        table = table.reindex([s for s in SPLITS if s in table.index])
    x = np.arange(len(table))
    for offset, label, color in ((-0.2, 0, "tab:blue"), (0.2, 1, "tab:red")):
        bars = ax.bar(x + offset, table[label].to_numpy(), width=0.4, label=CLASS_NAMES[label], color=color)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, [_plain(v, 24) for v in table.index], rotation=20 if len(x) > 3 else 0)
    ax.set_title(title)
    ax.set_ylabel("clips")
    ax.legend()


def class_balance_figure(manifest: pd.DataFrame):
    """Bar charts of clips per class, per split and per source, from the manifest."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_split, ax_source = fig.subplots(1, 2)
    _class_bars(ax_split, manifest, "split", "clips per class and split")
    _class_bars(ax_source, manifest, "source", "clips per class and source")
    return fig


def duration_figure(manifest: pd.DataFrame):
    """Distributions of duration (per class), frame rate and resolution, from the manifest."""
    fig = Figure(figsize=(14, 4), layout="constrained")
    ax_dur, ax_fps, ax_res = fig.subplots(1, 3)
    durations = manifest["duration_s"].astype(float)
    finite = durations[np.isfinite(durations)]
    bins = np.linspace(finite.min(), finite.max(), 25) if len(finite) and finite.max() > finite.min() else 10
    for label, color in ((0, "tab:blue"), (1, "tab:red")):
        values = durations[(manifest["label"] == label) & np.isfinite(durations)]
        if len(values):
            ax_dur.hist(values, bins=bins, alpha=0.6, color=color, label=CLASS_NAMES[label])
    ax_dur.set(title="clip duration", xlabel="seconds", ylabel="clips")
    ax_dur.legend()
    fps = manifest["fps"].astype(float).round(2).dropna().value_counts().sort_index()
    ax_fps.bar([f"{v:g}" for v in fps.index], fps.to_numpy(), color="tab:gray")
    ax_fps.set(title="frame rate", xlabel="fps", ylabel="clips")
    res = (manifest["width"].astype(str) + "x" + manifest["height"].astype(str)).value_counts().head(12)
    ax_res.barh(res.index[::-1], res.to_numpy()[::-1], color="tab:green")
    ax_res.set(title="resolution (most common)", xlabel="clips")
    return fig


def frame_grid_figure(manifest: pd.DataFrame, per_class: int = 4, frames: int = 4, seed: int = 0):
    """Frames sampled evenly from a few random clips of each class.

    Args:
        manifest: from ``build_manifest`` (needs path, source, rel_path, label, frames).
        per_class: clips shown per class (rows).
        frames: frames shown per clip (columns).
        seed: which clips are drawn.
    Returns:
        matplotlib Figure; a clip that fails to decode shows the reason instead.
    """
    if per_class < 1 or frames < 1:
        raise ValueError(f"frame_grid_figure: per_class and frames must be >= 1, got {per_class}, {frames}")
    rng = np.random.default_rng(seed)
    picks: list = []  # the chosen rows, as itertuples() gives them
    for label in (1, 0):
        # in dataset order (source, rel_path), not by absolute path: the same clips wherever the data lies
        rows = manifest[manifest["label"] == label].sort_values(["source", "rel_path"], kind="stable")
        chosen = rng.choice(len(rows), size=min(per_class, len(rows)), replace=False).tolist()
        picks.extend(rows.iloc[sorted(chosen)].itertuples())
    if not picks:
        raise ValueError("frame_grid_figure: the manifest has no clips to show")
    fig = Figure(figsize=(2.2 * frames, 1.9 * len(picks)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(picks), frames, squeeze=False))
    for row, clip in zip(axes, picks, strict=True):
        name = f"{CLASS_NAMES[int(clip.label)]} | {clip.source}/{clip.rel_path}"
        try:
            n = int(clip.frames) if int(clip.frames) > 0 else 1
            images = read_frames(clip.path, sample_frame_indices(n, frames), size=(160, 120))
        except (VideoReadError, ValueError, OSError) as err:
            images, failure = None, str(err)
        for j, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if images is not None:
                ax.imshow(images[j])
            elif j == 0:
                ax.text(0.02, 0.5, _plain(failure, 120), fontsize=6, wrap=True, transform=ax.transAxes)
        row[0].set_title(_plain(name), fontsize=8, loc="left", color="tab:red" if clip.label == 1 else "tab:blue")
    return fig
