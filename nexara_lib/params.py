"""Flat, typed, layered run parameters.

Parameters are flat keys (papermill merges top-level names only). They come from
YAML files layered left to right, then ``--set key=value`` overrides. Every key
is declared once in ``SCHEMA`` with its type, default and a one-line meaning;
an unknown key, a wrong type or a missing path is a ``ParamError`` naming the
key and where it came from, raised before any work starts.

Relative paths in a YAML file are resolved against that file's folder, so a
parameter file means the same thing from any working directory; relative paths
given on the command line are resolved against the current directory.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import yaml


class ParamError(ValueError):
    """A parameter is unknown, mistyped or points at a missing path."""


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int, float, str, bool, path, paths, path_list, str_list, float_list, int_list, member_list, str_or_float
    default: Any
    help: str
    stage: str
    choices: tuple = ()
    must_exist: bool = True  # for path kinds: the path has to exist when set


def _p(name, kind, default, help, stage, choices=(), must_exist=True):
    return Param(name, kind, default, help, stage, tuple(choices), must_exist)


SCHEMA: Mapping[str, Param] = MappingProxyType({p.name: p for p in [
    # --- run -----------------------------------------------------------------
    _p("data_dir", "paths", None, "dataset root folder, or a list of roots combined with a `source` column; null with synthetic_clips > 0", "run"),
    _p("groups_csv", "path", None, "optional CSV (clip, label, source_group): clips of one group never span two splits", "run"),
    _p("synthetic_clips", "int", 0, "if > 0, generate this many synthetic clips (RWF-2000 layout) and use them instead of data_dir", "run"),
    _p("output_root", "path", "outputs", "folder that holds one sub-folder per run", "run", must_exist=False),
    _p("run_name", "str", "", "run folder name under output_root; empty = '<params-file-stem>-<timestamp>'", "run"),
    _p("seed", "int", 42, "seed for Python, NumPy and TensorFlow: same seed, same data -> same results", "run"),
    _p("max_clips", "int", 0, "use at most this many clips, stratified by class (0 = all): a quick look at a big dataset", "run"),
    # --- 01 audit ------------------------------------------------------------
    _p("split_fractions", "float_list", [0.70, 0.15, 0.15], "train/validation/test fractions when the dataset has no splits of its own", "audit"),
    _p("probe_workers", "int", 2, "processes that probe clips in parallel (0 = in this process, no timeout)", "audit"),
    _p("probe_timeout_s", "float", 30.0, "a clip whose probe takes longer (a hung decoder) is killed and listed as unusable", "audit"),
    # --- 02 features ---------------------------------------------------------
    _p("backbone", "str", "vgg19", "frame encoder from the backbone registry (vgg19, resnet50v2, mobilenetv2, efficientnetb0, efficientnetb4, mobilenet_v1_tflite, flow)", "features"),
    _p("backbone_weights", "str", "imagenet", "'imagenet', 'none' (random init), or a path to a local weights/.tflite file", "features"),
    _p("frames_per_clip", "int", 20, "T: frames sampled evenly over each clip", "features"),
    _p("image_size", "int", 0, "square frame size fed to the backbone; 0 = the backbone's own input size", "features"),
    _p("extract_batch_size", "int", 0, "frames per backbone call (0 = the backbone's own batch size from the registry)", "features"),
    _p("extract_workers", "int", 2, "decoder processes feeding the backbone (0 = decode in the notebook's process); parallel tasks on Ray", "features"),
    _p("extract_executor", "str", "local", "'local' (decoder processes on this machine) or 'ray' (clips spread over a Ray cluster, GPU actors when it has GPUs)", "features", choices=("local", "ray")),
    _p("ray_address", "str", "", "Ray cluster to join with extract_executor: ray ('' = the RAY_ADDRESS environment variable, else a local instance)", "features"),
    _p("frame_augment_copies", "int", 0, "augmented copies of each training clip extracted from transformed frames and added to the training set (0 = none)", "features"),
    _p("frame_augment_ops", "str_list", ["hflip", "brightness_contrast", "rotate_zoom", "temporal_jitter"], "frame-level augmentation ops for those copies (random per copy, seeded)", "features"),
    # --- 03 training ---------------------------------------------------------
    _p("model", "str", "hybrid", "sequence model from the registry (hybrid, bilstm, bigru, conv1d_lstm, transformer)", "training"),
    _p("dense_units", "int", 512, "width of the Dense compression applied to every frame feature", "training"),
    _p("lstm_units", "int", 96, "units of each direction of the first two BiLSTMs", "training"),
    _p("lstm_units_last", "int", 48, "units of each direction of the last BiLSTM", "training"),
    _p("attention_units", "int", 64, "hidden size of the additive (tanh) temporal attention score", "training"),
    _p("head_units", "int_list", [128, 64], "widths of the dense head after attention pooling", "training"),
    _p("dropout", "float", 0.32, "dropout rate (half after the compression, 0.8x on the last dense layer)", "training"),
    _p("recurrent_dropout", "float", 0.0, "LSTM recurrent dropout; > 0 disables the fused GPU kernel", "training"),
    _p("l2", "float", 1e-4, "L2 penalty on every kernel", "training"),
    _p("focal_gamma", "float", 3.0, "focal loss focusing parameter (0 = cross-entropy)", "training"),
    _p("focal_alpha", "str_or_float", "auto", "focal loss weight of the violent class; 'auto' = from training class frequencies", "training"),
    _p("class_weights", "bool", False, "also weight samples by inverse class frequency", "training"),
    _p("label_smoothing", "float", 0.0, "label smoothing applied to the one-hot targets", "training"),
    _p("optimizer", "str", "adam", "optimizer: adam, adamw or sgd", "training", choices=("adam", "adamw", "sgd")),
    _p("learning_rate", "float", 1e-3, "peak learning rate reached after warm-up", "training"),
    _p("warmup_epochs", "int", 5, "epochs of linear warm-up before cosine decay", "training"),
    _p("gradient_clip_norm", "float", 1.0, "global gradient-norm clipping (0 = off)", "training"),
    _p("batch_size", "int", 64, "training batch size", "training"),
    _p("epochs", "int", 150, "maximum training epochs", "training"),
    _p("early_stopping_patience", "int", 20, "epochs without validation improvement before stopping (best weights restored)", "training"),
    _p("early_stopping_monitor", "str", "val_loss", "validation metric watched by early stopping (val_loss, val_auc, val_balanced_accuracy, ...); a continuous one avoids ties on small validation sets", "training"),
    _p("augment_factor", "int", 3, "class-balanced feature-space augmentation: training set grows to this many times its size", "training"),
    _p("augment_ops", "str_list", ["noise", "feature_dropout", "temporal_shift", "mix"], "feature-space augmentation ops from the registry", "training"),
    _p("gap_warning", "float", 0.15, "per-class validation accuracy gap that logs a warning", "training"),
    _p("gap_critical", "float", 0.25, "per-class validation accuracy gap that logs a critical message", "training"),
    _p("mixed_precision", "str", "auto", "'auto' (mixed_float16 when a GPU is visible), 'on' or 'off'", "training", choices=("auto", "on", "off")),
    _p("gap_stop_patience", "int", 0, "stop training after this many consecutive epochs with a critical class gap (0 = never)", "training"),
    _p("multi_gpu", "str", "auto", "'auto': MirroredStrategy over all GPUs when more than one is visible (batch_size is per GPU); 'off': one device", "training", choices=("auto", "off")),
    _p("checkpoint_interval_s", "float", 30.0, "seconds between resumable checkpoints (0 = after every epoch); the last epoch is always committed", "training"),
    _p("tensorboard", "bool", True, "write TensorBoard logs (epoch metrics incl. per-class accuracy) under training/tensorboard", "training"),
    # --- 03 cross-validation and ablations ----------------------------------------
    _p("cv_folds", "int", 0, "k >= 2: grouped, stratified k-fold cross-validation on train+val (inner validation from the training folds); 0 = the fixed train/val split", "ablation"),
    _p("ablation_configs", "path_list", [], "parameter files with training keys only, each trained beside the run's own recipe on the same features", "ablation"),
    _p("ablation_seeds", "int_list", [1, 2, 3], "seeds every cross-validation/ablation configuration is trained with (mean ± std over seeds)", "ablation"),
    # --- 04 diagnostics ------------------------------------------------------
    _p("max_false_positive_rate", "float", 0.03, "second operating point: highest validation FPR allowed", "diagnostics"),
    _p("bootstrap_samples", "int", 1000, "bootstrap resamples for 95% confidence intervals", "diagnostics"),
    _p("n_hardest", "int", 6, "misclassified test clips shown with frames and attention", "diagnostics"),
    # --- 05 TTA --------------------------------------------------------------
    _p("tta_transforms", "str_list", ["identity", "hflip", "brightness_contrast", "frame_rate", "frame_shift", "temporal_shift", "feature_noise"], "test-time transforms from the TTA registry", "tta"),
    _p("tta_aggregation", "str", "mean_prob", "how TTA views are combined: mean_prob, mean_logit or max", "tta", choices=("mean_prob", "mean_logit", "max")),
    # --- 06 ensemble ---------------------------------------------------------
    _p("ensemble_members", "member_list", [
        {"model": "hybrid", "seed": 1}, {"model": "bigru", "seed": 2}, {"model": "conv1d_lstm", "seed": 3}],
        "members: each {model, seed, backbone (optional, default = backbone)}", "ensemble"),
    _p("ensemble_method", "str", "weighted", "'weighted' soft voting with weights fit on validation, or 'stacking'", "ensemble",
       choices=("weighted", "stacking")),
]})

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


def _fail(key, where, message):
    raise ParamError(f"parameter {key!r} (from {where}): {message}")


def _as_path(value, key, where, base: Path | None, must_exist: bool) -> str:
    if not isinstance(value, (str, Path)) or str(value) == "":
        _fail(key, where, f"expected a path string, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    path = Path(str(path.resolve()))
    if must_exist and not path.exists():
        _fail(key, where, f"path {str(path)!r} does not exist; fix the path or create it")
    return str(path)


def coerce(key: str, value: Any, where: str, base: Path | None = None) -> Any:
    """Check ``value`` against the schema entry of ``key``; return the typed value."""
    if key not in SCHEMA:
        close = difflib.get_close_matches(key, list(SCHEMA), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see the parameter reference in README.md"
        _fail(key, where, f"unknown parameter{hint}")
    spec = SCHEMA[key]
    kind = spec.kind
    if value is None:
        if spec.default is None:
            return None
        _fail(key, where, f"must not be null (expected {kind})")
    if kind == "bool":
        if not isinstance(value, bool):
            _fail(key, where, f"expected true/false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, where, f"expected an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, where, f"expected a number, got {value!r}")
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            _fail(key, where, f"expected a string, got {value!r}")
    elif kind == "str_or_float":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            _fail(key, where, f"expected 'auto' or a number, got {value!r}")
        if isinstance(value, str) and value != "auto":
            _fail(key, where, f"expected 'auto' or a number, got {value!r}")
        value = value if isinstance(value, str) else float(value)
    elif kind == "path":
        value = _as_path(value, key, where, base, spec.must_exist)
    elif kind == "path_list":
        if not isinstance(value, list):
            _fail(key, where, f"expected a list of paths (may be empty), got {value!r}")
        value = [_as_path(v, key, where, base, spec.must_exist) for v in value]
    elif kind == "paths":
        items = value if isinstance(value, list) else [value]
        if not items:
            _fail(key, where, "expected a path or a non-empty list of paths")
        value = [_as_path(v, key, where, base, spec.must_exist) for v in items]
    elif kind in ("str_list", "float_list", "int_list"):
        if not isinstance(value, list):
            _fail(key, where, f"expected a list, got {value!r}")
        item_type = {"str_list": str, "float_list": (int, float), "int_list": int}[kind]
        for item in value:
            if isinstance(item, bool) or not isinstance(item, item_type):
                _fail(key, where, f"every item must be {kind.split('_')[0]}, got {item!r}")
        if kind == "float_list":
            value = [float(v) for v in value]
    elif kind == "member_list":
        if not isinstance(value, list) or not value:
            _fail(key, where, "expected a non-empty list of {model, seed, backbone} mappings")
        members = []
        for item in value:
            if not isinstance(item, dict) or "model" not in item:
                _fail(key, where, f"each member needs at least a 'model', got {item!r}")
            unknown = set(item) - MEMBER_KEYS
            if unknown:
                _fail(key, where, f"member {item!r} has unknown keys {sorted(unknown)}; allowed: {sorted(MEMBER_KEYS)}")
            if not isinstance(item.get("seed", 0), int):
                _fail(key, where, f"member seed must be an integer, got {item.get('seed')!r}")
            members.append(dict(item))
        value = members
    if spec.choices and value not in spec.choices:
        _fail(key, where, f"{value!r} is not one of {list(spec.choices)}")
    return value


def _check_consistency(values: dict, sources: dict) -> None:
    def need(cond, key, message):
        if not cond:
            _fail(key, sources.get(key, "default"), message)

    need(values["data_dir"] is not None or values["synthetic_clips"] > 0, "data_dir",
         "no data: set data_dir to a dataset folder, or synthetic_clips > 0 for generated clips")
    need(values["data_dir"] is None or values["synthetic_clips"] == 0, "synthetic_clips",
         "set either data_dir or synthetic_clips, not both")
    fr = values["split_fractions"]
    need(len(fr) == 3 and all(f > 0 for f in fr) and abs(sum(fr) - 1) < 1e-6, "split_fractions",
         f"expected three positive fractions summing to 1, got {fr}")
    need(values["frames_per_clip"] >= 2, "frames_per_clip", "needs at least 2 frames per clip")
    need(values["extract_batch_size"] >= 0, "extract_batch_size", "must be >= 0 (0 = the backbone's own)")
    need(values["extract_workers"] >= 0, "extract_workers", "must be >= 0 (0 = decode in this process)")
    need(values["frame_augment_copies"] >= 0, "frame_augment_copies", "must be >= 0 (0 = no copies)")
    need(values["frame_augment_copies"] == 0 or len(set(values["frame_augment_ops"])) == len(values["frame_augment_ops"]) > 0,
         "frame_augment_ops", "needs at least one op, each once, when frame_augment_copies > 0")
    need(0 <= values["dropout"] < 1, "dropout", "must be in [0, 1)")
    need(0 <= values["recurrent_dropout"] < 1, "recurrent_dropout", "must be in [0, 1)")
    need(values["batch_size"] > 0 and values["epochs"] > 0, "batch_size", "batch_size and epochs must be positive")
    need(values["augment_factor"] >= 1, "augment_factor", "must be >= 1 (1 = no augmentation)")
    need(0 < values["max_false_positive_rate"] < 1, "max_false_positive_rate", "must be in (0, 1)")
    need(values["cv_folds"] == 0 or values["cv_folds"] >= 2, "cv_folds", "must be 0 (fixed split) or k >= 2 folds")
    need(len(values["ablation_seeds"]) > 0 and all(v >= 0 for v in values["ablation_seeds"]), "ablation_seeds",
         "needs at least one non-negative seed")
    need(values["gap_stop_patience"] >= 0, "gap_stop_patience", "must be >= 0 (0 = never stop on the gap)")
    _check_registry_names(values, sources)


def _check_registry_names(values: dict, sources: dict) -> None:
    """Names that pick a registry entry must exist now, not when notebook 05 gets to them."""
    from .augment import available_augmentations
    from .backbones import available_backbones
    from .frame_augment import available_frame_augmentations
    from .models import available_models
    from .tta import TTA_TRANSFORMS

    def known(key, names, registry):
        unknown = [n for n in names if n not in registry]
        if unknown:
            _fail(key, sources.get(key, "default"), f"unknown {unknown}; available: {sorted(registry)}")

    known("backbone", [values["backbone"]], available_backbones())
    known("model", [values["model"]], available_models())
    known("augment_ops", values["augment_ops"], available_augmentations())
    known("frame_augment_ops", values["frame_augment_ops"], available_frame_augmentations())
    known("tta_transforms", values["tta_transforms"], list(TTA_TRANSFORMS))
    known("ensemble_members", [m["model"] for m in values["ensemble_members"]], available_models())
    known("ensemble_members", [m["backbone"] for m in values["ensemble_members"] if "backbone" in m],
          available_backbones())
    if "identity" not in values["tta_transforms"]:
        _fail("tta_transforms", sources.get("tta_transforms", "default"),
              "must include 'identity': TTA is compared with the model without it")


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


def resolve_params(files: Iterable[str | Path] = (), overrides: Mapping[str, Any] | None = None,
                   overrides_source: str = "--set") -> Params:
    """Layer defaults, then each file left to right, then overrides; validate all."""
    values = {k: p.default for k, p in SCHEMA.items()}
    sources: dict[str, str] = {}
    for f in files:
        for key, value in load_yaml(f).items():
            values[key], sources[key] = value, str(f)
    for key, value in (overrides or {}).items():
        values[key], sources[key] = coerce(key, value, overrides_source), overrides_source
    _check_consistency(values, sources)
    return Params(values, sources)


def params_from_namespace(param_files: Iterable[str | Path], namespace: Mapping[str, Any]) -> Params:
    """Resolve parameters inside a notebook.

    Layers ``param_files``, then any schema key defined in ``namespace`` (the
    notebook's globals, where papermill injects parameters).
    """
    injected = {k: v for k, v in namespace.items() if k in SCHEMA}
    return resolve_params(param_files, injected, overrides_source="notebook parameters")


def dump_params(params: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dict(params), sort_keys=False), encoding="utf-8")


def reference_table() -> str:
    """The parameter reference as a Markdown table (embedded in README.md)."""
    lines = ["| key | stage | default | meaning |", "|---|---|---|---|"]
    for p in SCHEMA.values():
        default = yaml.safe_dump(p.default, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
        lines.append(f"| `{p.name}` | {p.stage} | `{default}` | {p.help} |")
    return "\n".join(lines)
