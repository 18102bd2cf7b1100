"""Stage 4 glue: the hardest misclassified clips as frame thumbnails with the model's attention."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nexara_lib.labels import CLASS_NAMES
from nexara_lib.stages.data import FeatureSplit
from nexara_lib.video.probe import read_frames, sample_frame_indices



def misclassified_gallery(model, manifest: pd.DataFrame, split: FeatureSplit, hardest: pd.DataFrame,
                          thumb_size: int = 96) -> Figure:
    """Thumbnails of the sampled frames of each clip in ``hardest``, with per-frame attention.

    Args:
        model: the trained sequence model (attention is shown when it has a temporal attention layer;
            otherwise every frame gets equal weight and the title says so).
        manifest: usable manifest rows (clip_id, path, frames).
        split: the features the predictions were made on.
        hardest: output of ``diagnostics.hardest_misclassified``.
    Returns:
        A matplotlib Figure (a short notice when nothing was misclassified).
    """
    from nexara_lib.evaluation.diagnostics import attention_gallery_figure
    from nexara_lib.training.models import attention_model
    if hardest.empty:
        fig = Figure(figsize=(6, 1))
        fig.text(0.5, 0.5, "No misclassified clips at the operating threshold.", ha="center", va="center")
        return fig
    position = {cid: i for i, cid in enumerate(split.clip_ids)}
    x = split.x[[position[cid] for cid in hardest["clip_id"]]]
    try:
        _, attention = attention_model(model).predict(x, verbose=0)
        note = ""
    except ValueError:  # models without an attention layer: show the frames, uniform weights
        attention, note = np.full(x.shape[:2], 1.0 / x.shape[1]), " (no attention layer: uniform)"
    rows = manifest.set_index("clip_id")
    frames_list, titles = [], []
    for (_, item), att in zip(hardest.iterrows(), attention):
        row = rows.loc[item["clip_id"]]
        indices = sample_frame_indices(int(row["frames"]), x.shape[1])
        frames_list.append(read_frames(row["path"], indices, size=thumb_size))
        titles.append(f"{item['clip_id']}: true {CLASS_NAMES[int(item['y_true'])]}, "
                      f"P(violent) = {item['prob']:.2f}{note}")
    return attention_gallery_figure(frames_list, [np.asarray(a, dtype=float) for a in attention], titles)
