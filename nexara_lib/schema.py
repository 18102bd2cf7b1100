"""The parameter schema: every key's type, default, allowed values and meaning, declared once.

``SCHEMA`` maps each flat key (papermill merges top-level names only) to its ``Param``: kind, default, help
text, stage, choices and the ``Range`` of a number. It is the one owner of every default: YAML files, notebooks,
the command line and model factories read defaults from here, never repeat one. ``nexara params`` prints it
(docs/parameters.md). How values are checked against it lives in ``nexara_lib.config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class ParamError(ValueError):
    """A parameter is unknown, mistyped, out of range or points at a missing path."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a number: ``low`` and ``high`` bounds (None = unbounded), each
    included unless marked open; ``note`` says what a boundary value means."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value) -> bool:
        if value != value:  # NaN is in no range
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(above and below)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"{text} ({self.note})" if self.note else text


UNIT = Range(0, 1)  # a fraction: [0, 1]
RATE = Range(0, 1, high_open=True)  # dropout-like rates: [0, 1)
OPEN_UNIT = Range(0, 1, low_open=True, high_open=True)  # a probability that is neither 0 nor 1
POSITIVE = Range(0, low_open=True)
COUNT = Range(1)  # at least one


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    kind: (
        str  # int, float, str, bool, path, paths, path_list, str_list, float_list, int_list, member_list, str_or_float
    )
    default: Any
    help: str
    stage: str
    choices: tuple = ()
    must_exist: bool = True  # for path kinds: the path has to exist when set
    bounds: Range | None = None  # numbers (of a list: every item; str_or_float: the number) must lie in it


def _p(name, kind, default, help, stage, choices=(), must_exist=True, bounds=None):
    return Param(name, kind, default, help, stage, tuple(choices), must_exist, bounds)


def _at_least(low, note=""):
    return Range(low, note=note)


# The table keeps one key per line (the formatter would spread every entry over eight lines).
# fmt: off
SCHEMA: Mapping[str, Param] = MappingProxyType({p.name: p for p in [
    # --- run -----------------------------------------------------------------
    _p("data_dir", "paths", None, "dataset root folder, or a list of roots combined with a `source` column; null with synthetic_clips > 0", "run"),
    _p("groups_csv", "paths", None, "optional CSV (clip, label, source_group), or a list of them: clips of one group never span two splits; a CSV inside a data_dir root (a field folder's groups.csv) describes that root's clips only, roots without one are grouped by duplicates", "run"),
    _p("synthetic_clips", "int", 0, "if > 0, generate this many synthetic clips (RWF-2000 layout) and use them instead of data_dir", "run", bounds=_at_least(0, "0 = use data_dir")),
    _p("output_root", "path", "outputs", "folder that holds one sub-folder per run", "run", must_exist=False),
    _p("run_name", "str", "", "run folder name under output_root; empty = '<params-file-stem>-<timestamp>'", "run"),
    _p("seed", "int", 42, "seed for Python, NumPy and TensorFlow: same seed, same data -> same results", "run", bounds=_at_least(0)),
    _p("max_clips", "int", 0, "use at most this many clips, stratified by class (0 = all): a quick look at a big dataset", "run"),
    _p("cell_timeout_s", "float", 21600.0, "a notebook cell running longer is stopped (a hung or silent kernel); its notebook is retried once, then the run fails naming notebook and cell", "run", bounds=Range(0, None, low_open=True)),
    # --- 01 audit ------------------------------------------------------------
    _p("split_fractions", "float_list", [0.70, 0.15, 0.15], "train/validation/test fractions when the dataset has no splits of its own", "audit"),
    _p("probe_workers", "int", 2, "processes that probe clips in parallel (0 = in this process, no timeout)", "audit", bounds=_at_least(0, "0 = probe in this process")),
    _p("probe_timeout_s", "float", 30.0, "a clip whose probe takes longer (a hung decoder) is killed and listed as unusable", "audit", bounds=POSITIVE),
    # --- 02 features ---------------------------------------------------------
    _p("backbone", "str", "vgg19", "frame encoder from the backbone registry (vgg19, resnet50v2, mobilenetv2, efficientnetb0, efficientnetb4, mobilenet_v1_tflite, flow)", "features"),
    _p("backbone_weights", "str", "imagenet", "'imagenet', 'none' (random init), or a path to a local weights/.tflite file", "features"),
    _p("pretrained_dir", "path", None, "folder holding pretrained files that cannot be downloaded (the .tflite of mobilenet_v1_tflite, which weights 'imagenet' loads from here)", "features", must_exist=False),
    _p("frames_per_clip", "int", 20, "T: frames sampled evenly over each clip", "features", bounds=_at_least(2, "frames per clip")),
    _p("image_size", "int", 0, "square frame size fed to the backbone; 0 = the backbone's own input size", "features", bounds=_at_least(0, "0 = the backbone's own")),
    _p("extract_batch_size", "int", 0, "frames per backbone call (0 = the backbone's own batch size from the registry)", "features", bounds=_at_least(0, "0 = the backbone's own")),
    _p("extract_workers", "int", 2, "decoder processes feeding the backbone (0 = decode in the notebook's process); parallel tasks on Ray", "features", bounds=_at_least(0, "0 = decode in this process")),
    _p("extract_executor", "str", "local", "'local' (decoder processes on this machine) or 'ray' (clips spread over a Ray cluster, GPU actors when it has GPUs)", "features", choices=("local", "ray")),
    _p("ray_address", "str", "", "Ray cluster to join with extract_executor: ray or study_executor: ray ('' = the RAY_ADDRESS environment variable, else a local instance)", "features"),
    _p("frame_augment_copies", "int", 0, "augmented copies of each training clip extracted from transformed frames and added to the training set (0 = none)", "features", bounds=_at_least(0, "0 = no copies")),
    _p("frame_augment_ops", "str_list", ["hflip", "brightness_contrast", "rotate_zoom", "temporal_jitter"], "frame-level augmentation ops for those copies (transform registry: frame level, use augment; random per copy, seeded)", "features"),
    _p("motion_crop_fraction", "float", 0.5, "stream view motion_crop: the window's share of the frame height and width, placed per sampled frame where it differs most from the next frame (in the cache key)", "features", bounds=Range(0, 1, low_open=True)),
    _p("motion_image_gain", "float", 4.0, "stream views motion_image and motion_image_crop: each sampled frame's absolute difference from its motion reference (the next decoded frame, or the neighbouring sampled frame when nothing moves against it) times this, clipped to 255 (in the cache key)", "features", bounds=POSITIVE),
    _p("tiles_grid", "int", 2, "stream view tiles: k, each sampled frame cut into k x k tiles encoded one by one (in the cache key)", "features", bounds=_at_least(2, "tiles per side")),
    _p("tile_pooling", "str", "max", "stream view tiles: how the k x k tile features of a frame are pooled when loaded (not in the cache key)", "features", choices=("max", "mean")),
    _p("streams", "str_list", ["identity"], "feature streams a model reads side by side per frame, each '[backbone:]view': identity (the whole frame), motion_crop, motion_image, motion_image_crop, tiles, e.g. [identity, motion_crop, 'flow:identity']", "features"),
    # --- 03 training ---------------------------------------------------------
    _p("model", "str", "hybrid", "sequence model from the registry (hybrid, bilstm, bigru, conv1d_lstm, transformer; pooled baselines: pooled_linear, pooled_mlp)", "training"),
    _p("dense_units", "int", 512, "width of the Dense compression applied to every frame feature", "training", bounds=_at_least(0, "0 = no compression")),
    _p("lstm_units", "int", 96, "units of each direction of the first two BiLSTMs", "training", bounds=COUNT),
    _p("lstm_units_last", "int", 48, "units of each direction of the last BiLSTM", "training", bounds=COUNT),
    _p("attention_units", "int", 64, "hidden size of the additive (tanh) temporal attention score", "training", bounds=COUNT),
    _p("head_units", "int_list", [128, 64], "widths of the dense head after attention pooling", "training", bounds=COUNT),
    _p("dropout", "float", 0.32, "dropout rate (half after the compression, 0.8x on the last dense layer)", "training", bounds=RATE),
    _p("recurrent_dropout", "float", 0.0, "LSTM recurrent dropout; > 0 disables the fused GPU kernel", "training", bounds=RATE),
    _p("l2", "float", 1e-4, "L2 penalty on every kernel", "training", bounds=_at_least(0)),
    _p("focal_gamma", "float", 3.0, "focal loss focusing parameter (0 = cross-entropy)", "training", bounds=_at_least(0)),
    _p("focal_alpha", "str_or_float", "auto", "focal loss weight of the violent class; 'auto' = from training class frequencies", "training", bounds=OPEN_UNIT),
    _p("class_weights", "bool", False, "also weight samples by inverse class frequency", "training"),
    _p("label_smoothing", "float", 0.0, "label smoothing applied to the one-hot targets", "training", bounds=RATE),
    _p("optimizer", "str", "adam", "optimizer: adam, adamw or sgd", "training", choices=("adam", "adamw", "sgd")),
    _p("learning_rate", "float", 1e-3, "peak learning rate reached after warm-up", "training", bounds=POSITIVE),
    _p("warmup_epochs", "int", 5, "epochs of linear warm-up before cosine decay", "training", bounds=_at_least(0)),
    _p("gradient_clip_norm", "float", 1.0, "global gradient-norm clipping (0 = off)", "training", bounds=_at_least(0, "0 = no clipping")),
    _p("batch_size", "int", 64, "training batch size", "training", bounds=COUNT),
    _p("epochs", "int", 150, "maximum training epochs", "training", bounds=COUNT),
    _p("early_stopping_patience", "int", 20, "epochs without validation improvement before stopping (best weights restored)", "training", bounds=_at_least(0)),
    _p("early_stopping_monitor", "str", "val_loss", "validation metric watched by early stopping (val_loss, val_auc, val_balanced_accuracy, ...); a continuous one avoids ties on small validation sets", "training"),
    _p("augment_factor", "int", 3, "class-balanced feature-space augmentation: training set grows to this many times its size", "training", bounds=_at_least(1, "1 = no augmentation")),
    _p("augment_ops", "str_list", ["noise", "feature_dropout", "temporal_shift", "mix"], "feature-space augmentation ops (transform registry: feature level, use augment)", "training"),
    _p("gap_warning", "float", 0.15, "per-class validation accuracy gap that logs a warning", "training", bounds=UNIT),
    _p("gap_critical", "float", 0.25, "per-class validation accuracy gap that logs a critical message", "training", bounds=UNIT),
    _p("mixed_precision", "str", "auto", "'auto' (mixed_float16 when a GPU is visible), 'on' or 'off'", "training", choices=("auto", "on", "off")),
    _p("gap_stop_patience", "int", 0, "stop training after this many consecutive epochs with a critical class gap (0 = never)", "training", bounds=_at_least(0, "0 = never stop on the gap")),
    _p("multi_gpu", "str", "auto", "'auto': MirroredStrategy over all GPUs when more than one is visible (batch_size is per GPU); 'off': one device", "training", choices=("auto", "off")),
    _p("checkpoint_interval_s", "float", 30.0, "seconds between resumable checkpoints (0 = after every epoch); the last epoch is always committed", "training", bounds=_at_least(0, "0 = every epoch")),
    _p("tensorboard", "bool", True, "write TensorBoard logs (epoch metrics incl. per-class accuracy) under training/tensorboard", "training"),
    _p("pooled_c_grid", "float_list", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0], "pooled_linear: inverse L2 strengths C tried by the closed-form logistic regression; the one with the best early_stopping_monitor on validation is kept", "training", bounds=POSITIVE),
    _p("pooled_hidden_units", "int", 64, "pooled_mlp: width of the hidden ReLU layer on the pooled, standardised statistics", "training", bounds=COUNT),
    # --- 03 cross-validation and ablations ----------------------------------------
    _p("cv_folds", "int", 0, "k >= 2: grouped, stratified k-fold cross-validation on train+val (inner validation from the training folds); 0 = the fixed train/val split", "ablation"),
    _p("ablation_configs", "path_list", [], "parameter files with training keys only, each trained beside the run's own recipe on the same features", "ablation"),
    _p("ablation_seeds", "int_list", [1, 2, 3], "seeds every cross-validation/ablation configuration is trained with (mean ± std over seeds)", "ablation"),
    _p("select_recipe", "str", "none", "'cv': rank the run's recipe and every candidate (candidate_streams, baseline_models, ablation_configs) by grouped cross-validation on train + val and carry the winner forward, refit on train + val with epochs, threshold and temperature from its out-of-fold predictions; 'none': the run's recipe", "ablation", choices=("none", "cv")),
    _p("candidate_streams", "str_list", [], "stream sets the selection compares, each '+'-joined, e.g. 'identity+motion_crop' (the run's streams are always a candidate)", "ablation"),
    _p("baseline_models", "str_list", [], "models the selection tries on every candidate stream set beside the run's recipe, e.g. [pooled_linear, pooled_mlp]", "ablation"),
    _p("study_executor", "str", "local", "where the units of the study (and of recipe selection) train: 'local' (this machine: study_workers processes) or 'ray' (one Ray task per unit on the cluster of ray_address)", "ablation", choices=("local", "ray")),
    _p("study_workers", "int", 0, "units trained at once: 0 = one after another in the notebook's process; N = N worker processes of one thread each (best: one per core); on Ray, units in flight (0 = one per CPU of the cluster)", "ablation", bounds=_at_least(0, "0 = in the notebook's process")),
    _p("study_gpus_per_unit", "str_or_float", "auto", "GPUs each unit asks for on Ray (a fraction shares a GPU); 'auto' = 1 when the cluster has GPUs, else 0", "ablation", bounds=_at_least(0)),
    # --- 04 diagnostics ------------------------------------------------------
    _p("max_false_positive_rate", "float", 0.03, "second operating point: highest validation FPR allowed", "diagnostics", bounds=OPEN_UNIT),
    _p("bootstrap_samples", "int", 1000, "bootstrap resamples for 95% confidence intervals", "diagnostics", bounds=COUNT),
    _p("n_hardest", "int", 6, "misclassified test clips shown with frames and attention", "diagnostics", bounds=_at_least(0)),
    # --- 05 TTA --------------------------------------------------------------
    _p("tta_transforms", "str_list", ["identity", "hflip", "brightness_contrast", "frame_rate", "frame_shift", "feature_shift", "feature_noise"], "test-time views (transform registry: use tta, frame or feature level)", "tta"),
    _p("tta_aggregation", "str", "mean_prob", "how TTA views are combined: mean_prob, mean_logit or max", "tta", choices=("mean_prob", "mean_logit", "max")),
    # --- 06 ensemble ---------------------------------------------------------
    _p("ensemble_members", "member_list", [
        {"model": "hybrid", "seed": 1}, {"model": "bigru", "seed": 2}, {"model": "conv1d_lstm", "seed": 3}],
        "members: each {model, seed, backbone (optional, default = backbone)}", "ensemble"),
    _p("ensemble_method", "str", "weighted", "'weighted' soft voting with weights fit on validation, or 'stacking'", "ensemble",
       choices=("weighted", "stacking")),
    # --- 07 deploy -----------------------------------------------------------
    _p("export_variants", "str_list", ["float32", "float16", "int8"], "TFLite/LiteRT variants of the carried-forward model written by `nexara export` and notebook 07 (float32, float16, int8 = dynamic-range)", "deploy"),
    _p("detect_head_variant", "str", "float32", "which exported variant the detector runs", "deploy", choices=("float32", "float16", "int8")),
    _p("detect_window_s", "float", 0.0, "detector window length in seconds; 0 = the median duration of the run's training clips (what the model was trained on)", "deploy", bounds=_at_least(0, "0 = median training clip")),
    _p("detect_stride", "float", 0.5, "step between window starts as a fraction of the window (0.5 = W/2)", "deploy", bounds=Range(0, 1, low_open=True)),
    _p("detect_align_windows", "bool", True, "snap the window and stride to the nearby pair whose overlapping windows sample the same frames, so each is encoded once (T frames are still spread evenly over the window, as in training); the window changes by at most (T-1)/2 frames and the stride by a few frames (surv_dev at 25 fps: 2 s -> 1.92 s, stride 1 s, each window shares 8 of its 16 frames per stream with the one before, where 2 s shares 0 and 2); the run summary reports the window used; false = exactly round(W x fps) frames every round(W x fps x detect_stride)", "deploy"),
    _p("detect_false_alarm_rate", "float", 0.05, "target false-alarm rate per window on validation non-violent clips: sets the detector's on-threshold", "deploy", bounds=OPEN_UNIT),
    _p("detect_confirm_k", "int", 3, "an alarm turns on when at least k of the last n window scores reach the on-threshold", "deploy", bounds=COUNT),
    _p("detect_confirm_n", "int", 4, "n: the number of recent windows the k-of-n confirmation looks at", "deploy", bounds=COUNT),
    _p("detect_hysteresis", "float", 0.1, "the alarm turns off only when k of the last n scores are below on-threshold minus this", "deploy", bounds=UNIT),
    _p("detect_cooldown_s", "float", 30.0, "after an alert episode ends, a new alarm within this many seconds continues it (no second alert)", "deploy", bounds=_at_least(0)),
    _p("detect_max_gap_s", "float", 2.0, "a jump between frame timestamps larger than this (or backwards) is a recorded gap: windows across it are unknown", "deploy", bounds=POSITIVE),
    _p("detect_stall_s", "float", 20.0, "a live source that delivers no frame for this long is reconnected (watchdog)", "deploy", bounds=POSITIVE),
    _p("detect_reconnect_attempts", "int", 5, "reconnection attempts of a live source that dropped, with doubling back-off (0.5 s, 1 s, 2 s, ...)", "deploy", bounds=_at_least(0)),
    _p("detect_min_cell", "int", 64, "smallest grid cell side in pixels; a grid whose cells would be smaller is an error", "deploy", bounds=_at_least(16)),
    _p("detect_test_clips", "int", 48, "test clips assembled into notebook 07's long test video (calm stretches and fights with known boundaries; each camera of its 2x2 grid shows the same clips)", "deploy", bounds=_at_least(2)),
    _p("detect_grid_margin", "int", 0, "pixels cut from each side of every grid cell (monitor borders, camera captions)", "deploy", bounds=_at_least(0)),
    _p("calibrate_min_minutes", "float", 10.0, "`nexara calibrate`: the least normal footage per camera (minutes) its threshold is set from; more when calibrate_tail_windows needs it", "deploy", bounds=_at_least(0)),
    _p("calibrate_tail_windows", "int", 10, "`nexara calibrate`: normal windows that must score at or above a camera's calibrated threshold, so a camera needs at least this / detect_false_alarm_rate scored windows", "deploy", bounds=COUNT),
    _p("evidence_pre_s", "float", 10.0, "alert evidence: seconds of video kept before the alarm (the fight began before the windows that confirmed it)", "deploy", bounds=_at_least(0)),
    _p("evidence_post_s", "float", 5.0, "alert evidence: seconds of video kept after the alarm", "deploy", bounds=_at_least(0)),
    _p("evidence_max_mb", "float", 2048.0, "alert evidence: disk cap of a detection's evidence folder in MB, oldest alerts deleted first (0 = write no evidence)", "deploy", bounds=_at_least(0, "0 = no evidence")),
    _p("evidence_cell_px", "int", 480, "alert evidence: a camera's picture is shrunk to at most this many pixels on its longer side (memory and disk)", "deploy", bounds=_at_least(16)),
    _p("evidence_max_fps", "float", 30.0, "alert evidence: frames per second kept at most", "deploy", bounds=POSITIVE),
    _p("feedback_normal_clips", "int", 20, "`nexara feedback`: normal clips per camera cut from its calibration footage (one window long, spread evenly)", "deploy", bounds=_at_least(0)),
    _p("review_dirs", "path_list", [], "notebook 09: more `nexara detect --out` folders whose alerts await review, beside those in the run folder (detect*/ and artifacts/deploy/)", "deploy"),
    # --- 08 field adaptation ---------------------------------------------------
    _p("adapt_k", "int_list", [0, 1, 2, 4], "notebook 08: reviewed clips per held-out camera that join training in the learning curve (0 = none; a camera keeps at least one clip to score)", "adaptation", bounds=_at_least(0)),
    _p("adapt_draws", "int", 3, "notebook 08: seeded draws of which clips of a camera are reviewed, for every k > 0", "adaptation", bounds=COUNT),
    _p("adapt_fold_seeds", "int_list", [0, 1, 2], "notebook 08: fold assignments of the cameras, one per seed (grouped cross-validation over cameras on train + val, never test)", "adaptation"),
    _p("adapt_cv_folds", "int", 5, "notebook 08: grouped folds over cameras (fewer when the run has fewer cameras)", "adaptation", bounds=_at_least(2)),
    _p("adapt_review_weight", "float", 1.0, "notebook 08, adapted design: weight of a camera's reviewed clip relative to a training clip of its class (1: on surv-fight-dev more weight did not help, grouped CV)", "adaptation", bounds=POSITIVE),
    _p("adapt_threshold_shrinkage", "float_list", [0.3, 1.0, 3.0, 10.0], "notebook 08, adapted design: shrinkages tried for the per-camera threshold (normal clips' worth of the training cameras' level mixed into a camera's), chosen per fold on the training cameras (the global threshold is always a candidate)", "adaptation", bounds=_at_least(0)),
    _p("adapt_center_shrinkage", "float", 0.0, "notebook 08, adapted design: > 0 centers each camera's pooled features on its normal footage's mean, shrunk toward the training cameras' by this many clips (0 = off: on surv-fight-dev it did not raise accuracy, grouped CV)", "adaptation", bounds=_at_least(0, "0 = off")),
    _p("adapt_calibration_negatives", "bool", False, "notebook 08, adapted design: a camera's other normal clips join training as negatives (off: on surv-fight-dev it lowered accuracy, grouped CV)", "adaptation"),
]})
# fmt: on
