"""ipywidgets for the notebooks: the clip browser of notebook 01 and the threshold slider of 04.

Headless runs (papermill, HTML reports) cannot use widgets: the notebooks show a static figure
beside each (the frame grid, the confusion matrix at the operating threshold). ipywidgets is
imported when a widget is built, so the library imports without the notebook stack.
"""

from __future__ import annotations

import html

import cv2
import numpy as np
import pandas as pd

from nexara_lib.evaluation.figures import confusion_matrix_figure
from nexara_lib.evaluation.metrics import binary_metrics
from nexara_lib.evaluation.predictions import check_labels, check_probabilities
from nexara_lib.labels import predict_labels
from nexara_lib.video.frames import read_frames, sample_frame_indices
from nexara_lib.video.reader import VideoReadError

ALL = "all"


def filter_clips(manifest: pd.DataFrame, class_name: str = ALL, split: str = ALL) -> pd.DataFrame:
    """Usable manifest rows of one class and split (``'all'`` keeps every value)."""
    rows = manifest[manifest["status"] == "ok"] if "status" in manifest.columns else manifest
    if class_name != ALL:
        rows = rows[rows["class_name"] == class_name]
    if split != ALL:
        rows = rows[rows["split"] == split]
    return rows


def _png(frame_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
    return buf.tobytes() if ok else b""


def clip_browser(manifest: pd.DataFrame, frames_per_clip: int = 8, size: int = 192):
    """Build the browser widget.

    Args:
        manifest: the audit manifest (clip_id, path, class_name, split, frames, status).
        frames_per_clip: frames sampled evenly over the clip (what feature extraction sees).
        size: square thumbnail side in pixels.
    Returns:
        An ``ipywidgets.VBox``; ``.children`` holds the class/split/clip pickers, the frame slider,
        the image and a caption.
    """
    import ipywidgets as w

    if manifest.empty:
        raise ValueError("clip_browser needs a manifest with at least one clip")
    class_pick = w.Dropdown(options=[ALL, *sorted(manifest["class_name"].unique())], description="class")
    split_pick = w.Dropdown(options=[ALL, *sorted(manifest["split"].unique())], description="split")
    clip_pick = w.Dropdown(description="clip", layout=w.Layout(width="60%"))
    frame_slider = w.IntSlider(min=0, max=frames_per_clip - 1, value=0, description="frame")
    image = w.Image(format="png", width=size * 2)
    caption = w.HTML()
    cache: dict = {}  # the frames of the clip on screen: one clip in memory at a time

    def load_clip(*_):
        rows = manifest.set_index("clip_id")
        if clip_pick.value is None:
            image.value, caption.value = b"", "<i>no usable clip matches this class and split</i>"
            return
        row = rows.loc[clip_pick.value]
        cache.clear()
        try:
            indices = sample_frame_indices(max(int(row["frames"]), 1), frames_per_clip)
            cache["frames"] = read_frames(row["path"], indices, size=size)
            cache["indices"] = indices
        except (VideoReadError, ValueError, OSError) as err:
            image.value = b""
            caption.value = f"<b>cannot show {html.escape(str(clip_pick.value))}</b>: {html.escape(str(err))}"
            return
        show_frame()

    def show_frame(*_):
        if "frames" not in cache:
            return
        i = min(frame_slider.value, len(cache["frames"]) - 1)
        image.value = _png(cache["frames"][i])
        row = manifest.set_index("clip_id").loc[clip_pick.value]
        caption.value = (
            f"{html.escape(str(row['class_name']))} · {html.escape(str(row['split']))} · "
            f"{html.escape(str(row['path']))} · frame {int(cache['indices'][i])} "
            f"of {int(row['frames'])}"
        )

    def refilter(*_):
        rows = filter_clips(manifest, class_pick.value, split_pick.value)
        clip_pick.options = list(rows["clip_id"])
        clip_pick.value = clip_pick.options[0] if clip_pick.options else None
        load_clip()

    class_pick.observe(refilter, names="value")
    split_pick.observe(refilter, names="value")
    clip_pick.observe(load_clip, names="value")
    frame_slider.observe(show_frame, names="value")
    refilter()
    return w.VBox([w.HBox([class_pick, split_pick]), clip_pick, frame_slider, image, caption])


def threshold_slider(y_true, prob, initial: float = 0.5, step: float = 0.01):
    """An ipywidgets slider that redraws the confusion matrix and metrics at the chosen threshold.

    For exploration only: the reported operating thresholds come from ``choose_threshold``.

    Returns:
        ``ipywidgets.interactive``; its ``.result`` is the ``binary_metrics`` dict at the current value.
    """
    import ipywidgets as widgets  # lazy: the library must import without a notebook stack
    from IPython.display import display

    y, p = check_labels(y_true), check_probabilities(prob)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but prob has {len(p)}")
    if not 0 <= initial <= 1:
        raise ValueError(f"initial threshold must be in [0, 1], got {initial!r}")

    def show(threshold):
        m = binary_metrics(y, p, threshold)
        title = (
            f"threshold {threshold:.2f}: accuracy {m['accuracy']:.3f}, balanced {m['balanced_accuracy']:.3f}, "
            f"gap {m['class_gap']:.3f}, FPR {m['fpr']:.3f}"
        )
        display(confusion_matrix_figure(y, predict_labels(p, threshold), title=title))
        return m

    slider = widgets.FloatSlider(
        value=initial,
        min=0.0,
        max=1.0,
        step=step,
        description="threshold",
        continuous_update=False,
        readout_format=".2f",
    )
    return widgets.interactive(show, threshold=slider)
