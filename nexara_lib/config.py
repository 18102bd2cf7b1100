"""The parameter schema: every key's type, default and meaning, declared once, and typed values.

Parameters are flat keys (papermill merges top-level names only). ``SCHEMA`` is the one
owner of every default: YAML files, notebooks and model factories never repeat one.
``coerce`` checks one value against its entry (type, choices, and the ``Range`` of a
number); an unknown key, a wrong type, a value out of range or a missing path is a
``ParamError`` naming the key, where it came from and what is allowed. ``stage_config``
gives a stage a frozen, typed view of just its keys.

Layering files and overrides, and the checks that need the registries, live in
``nexara_lib.run.params`` (it sits above the stages; this module sits below them).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from nexara_lib.io import write_text_atomic


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
    _p("groups_csv", "path", None, "optional CSV (clip, label, source_group): clips of one group never span two splits", "run"),
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
    _p("ray_address", "str", "", "Ray cluster to join with extract_executor: ray ('' = the RAY_ADDRESS environment variable, else a local instance)", "features"),
    _p("frame_augment_copies", "int", 0, "augmented copies of each training clip extracted from transformed frames and added to the training set (0 = none)", "features", bounds=_at_least(0, "0 = no copies")),
    _p("frame_augment_ops", "str_list", ["hflip", "brightness_contrast", "rotate_zoom", "temporal_jitter"], "frame-level augmentation ops for those copies (transform registry: frame level, use augment; random per copy, seeded)", "features"),
    _p("motion_crop_fraction", "float", 0.5, "stream view motion_crop: the window's share of the frame height and width, placed per sampled frame where it differs most from the next frame (in the cache key)", "features", bounds=Range(0, 1, low_open=True)),
    _p("tiles_grid", "int", 2, "stream view tiles: k, each sampled frame cut into k x k tiles encoded one by one (in the cache key)", "features", bounds=_at_least(2, "tiles per side")),
    _p("tile_pooling", "str", "max", "stream view tiles: how the k x k tile features of a frame are pooled when loaded (not in the cache key)", "features", choices=("max", "mean")),
    _p("streams", "str_list", ["identity"], "feature streams a model reads side by side per frame, each '[backbone:]view': identity (the whole frame), motion_crop, tiles, e.g. [identity, motion_crop, 'flow:identity']", "features"),
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
]})
# fmt: on

MEMBER_KEYS = {"model", "seed", "backbone", "backbone_weights"}


class Params(Mapping):
    """Resolved, validated, read-only parameters; keys are also attributes."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]):
        self._values = dict(values)
        self._sources = dict(sources)

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __getattr__(self, key):
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(f"no parameter named {key!r}") from None

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from (a file, '--set' or 'default')."""
        return self._sources.get(key, "default")

    def to_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self):
        return f"Params({self._values!r})"


def param_fail(key, where, message):
    raise ParamError(f"parameter {key!r} (from {where}): {message}")


def _as_path(value, key, where, base: Path | None, must_exist: bool) -> str:
    if not isinstance(value, (str, Path)) or str(value) == "":
        param_fail(key, where, f"expected a path string, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    path = Path(str(path.resolve()))
    if must_exist and not path.exists():
        param_fail(key, where, f"path {str(path)!r} does not exist; fix the path or create it")
    return str(path)


def coerce(key: str, value: Any, where: str, base: Path | None = None) -> Any:
    """Check ``value`` against the schema entry of ``key``; return the typed value."""
    if key not in SCHEMA:
        close = difflib.get_close_matches(key, list(SCHEMA), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see the parameter reference in README.md"
        param_fail(key, where, f"unknown parameter{hint}")
    spec = SCHEMA[key]
    kind = spec.kind
    if value is None:
        if spec.default is None:
            return None
        param_fail(key, where, f"must not be null (expected {kind})")
    if kind == "bool":
        if not isinstance(value, bool):
            param_fail(key, where, f"expected true/false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            param_fail(key, where, f"expected an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            param_fail(key, where, f"expected a number, got {value!r}")
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            param_fail(key, where, f"expected a string, got {value!r}")
    elif kind == "str_or_float":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            param_fail(key, where, f"expected 'auto' or a number, got {value!r}")
        if isinstance(value, str) and value != "auto":
            param_fail(key, where, f"expected 'auto' or a number, got {value!r}")
        value = value if isinstance(value, str) else float(value)
    elif kind == "path":
        value = _as_path(value, key, where, base, spec.must_exist)
    elif kind == "path_list":
        if not isinstance(value, list):
            param_fail(key, where, f"expected a list of paths (may be empty), got {value!r}")
        value = [_as_path(v, key, where, base, spec.must_exist) for v in value]
    elif kind == "paths":
        items = value if isinstance(value, list) else [value]
        if not items:
            param_fail(key, where, "expected a path or a non-empty list of paths")
        value = [_as_path(v, key, where, base, spec.must_exist) for v in items]
    elif kind in ("str_list", "float_list", "int_list"):
        if not isinstance(value, list):
            param_fail(key, where, f"expected a list, got {value!r}")
        item_type = {"str_list": str, "float_list": (int, float), "int_list": int}[kind]
        for item in value:
            if isinstance(item, bool) or not isinstance(item, item_type):
                param_fail(key, where, f"every item must be {kind.split('_')[0]}, got {item!r}")
        if kind == "float_list":
            value = [float(v) for v in value]
    elif kind == "member_list":
        if not isinstance(value, list) or not value:
            param_fail(key, where, "expected a non-empty list of {model, seed, backbone} mappings")
        members = []
        for item in value:
            if not isinstance(item, dict) or "model" not in item:
                param_fail(key, where, f"each member needs at least a 'model', got {item!r}")
            unknown = set(item) - MEMBER_KEYS
            if unknown:
                param_fail(
                    key, where, f"member {item!r} has unknown keys {sorted(unknown)}; allowed: {sorted(MEMBER_KEYS)}"
                )
            if not isinstance(item.get("seed", 0), int):
                param_fail(key, where, f"member seed must be an integer, got {item.get('seed')!r}")
            members.append(dict(item))
        value = members
    if spec.choices and value not in spec.choices:
        param_fail(key, where, f"{value!r} is not one of {list(spec.choices)}")
    if spec.bounds is not None:
        _check_bounds(key, where, value, spec.bounds)
    return value


def _check_bounds(key: str, where: str, value: Any, bounds: Range) -> None:
    """Numbers must lie in ``bounds``; for a list, every item; 'auto' of str_or_float is not a number."""
    if isinstance(value, list):
        for item in value:
            if item not in bounds:
                param_fail(key, where, f"every item must be {bounds}, got {item!r}")
    elif not isinstance(value, str) and value not in bounds:
        param_fail(key, where, f"must be {bounds}, got {value!r}")


def load_yaml(path: str | Path) -> dict:
    """Read one parameter file; its relative paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"parameter file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamError(f"parameter file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ParamError(f"parameter file {str(path)!r} must hold a mapping of key: value, got {type(data).__name__}")
    where = str(path)
    base = path.resolve().parent
    return {key: coerce(key, value, where, base) for key, value in data.items()}


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` from the command line; the value is read as YAML."""
    if "=" not in text:
        raise ParamError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def dump_params(params: Mapping[str, Any], path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(dict(params), sort_keys=False))


def stage_keys(stage: str) -> tuple[str, ...]:
    """The schema keys of one stage (``"training"``, ``"features"``, ...), in schema order."""
    keys = tuple(name for name, p in SCHEMA.items() if p.stage == stage)
    if not keys:
        stages = sorted({p.stage for p in SCHEMA.values()})
        raise ValueError(f"no parameter belongs to stage {stage!r}; stages: {stages}")
    return keys


@functools.cache
def _stage_class(stage: str) -> type:
    fields = [(key, Any, dataclasses.field(default=_frozen(SCHEMA[key].default))) for key in stage_keys(stage)]
    if stage != "run":
        fields.append(("seed", int, dataclasses.field(default=SCHEMA["seed"].default)))
    return dataclasses.make_dataclass(f"{stage.title()}Config", fields, frozen=True)


def stage_config(values: Mapping[str, Any], stage: str):
    """A frozen, typed view of one stage's keys (plus the run ``seed``).

    Keys missing from ``values`` take their schema default; every value is checked with
    ``coerce``; keys of other stages are ignored. Lists come back as tuples, so the view
    is hashable and cannot be changed behind a stage's back.
    """
    cls = _stage_class(stage)
    typed = {}
    for field in dataclasses.fields(cls):
        value = values[field.name] if field.name in values else SCHEMA[field.name].default
        value = coerce(field.name, list(value) if isinstance(value, tuple) else value, f"{stage} config")
        typed[field.name] = _frozen(value)
    return cls(**typed)


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value
