"""Benchmark: epoch time of our training loop vs a bare ``model.fit`` on the same arrays.

``train_sequence_model`` adds work around Keras' own loop (per-class validation
monitor, early stopping with best-weight copies, a learning-rate schedule, an
epoch clock). This benchmark measures what that costs per epoch: it trains the
same model on the same deterministic random arrays twice,

* **bare**: ``create_sequence_model`` + ``compile`` + plain ``model.fit`` with
  one tiny callback that records each epoch's wall time;
* **ours**: ``train_sequence_model`` with augmentation off (``augment_factor`` 1,
  so the fitted arrays are exactly the bare ones), early stopping that never
  stops (patience = epochs) and mixed precision off,

and writes a JSON report with steady-state seconds per epoch (epoch 1, which
includes graph tracing, is excluded), their ratio ours/bare and whether the
target (ratio <= 1.2) is met. Benchmarks are not tests: nothing here asserts on
a time.

Run it with ``make bench`` or::

    python -m benchmarks.bench_training --out outputs/bench/training.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_common import check_int, load_average, run_cli

TARGET_RATIO = 1.2  # our seconds per epoch may be at most this multiple of bare model.fit's
RUN_ORDER = ("bare", "ours")  # within each repeat; bare first so it pays any process warm-up
MONITOR_PROBE_CALLS = 4  # validation predictions timed on the trained bare model (the first one traces)
# timing keys of train_sequence_model's results that add up a cost paid at every epoch end
PER_EPOCH_TIMING_KEYS = ("checkpoint_seconds",)
# set by the benchmark itself; pass them as arguments (epochs) or not at all
_RESERVED_KEYS = ("epochs",)


def make_bench_data(
    n_train: int, n_val: int, timesteps: int, feature_dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic, learnable random clips: class 1 has its first quarter of features shifted up.

    Args:
        n_train: training clips (>= 2; classes alternate, so both are present).
        n_val: validation clips (>= 2).
        timesteps: T, steps per clip.
        feature_dim: D, features per step.
        seed: NumPy seed.

    Returns:
        ``(x_train, y_train, x_val, y_val)``: float32 ``(N, T, D)`` features and
        int64 ``(N,)`` labels in {0, 1}, balanced to within one clip and shuffled.
    """
    for name, value, low in (
        ("n_train", n_train, 2),
        ("n_val", n_val, 2),
        ("timesteps", timesteps, 1),
        ("feature_dim", feature_dim, 1),
    ):
        check_int(name, value, low)
    check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    shifted = max(1, feature_dim // 4)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % 2).astype(np.int64)
        x = rng.normal(size=(n, timesteps, feature_dim)).astype(np.float32)
        x[y == 1, :, :shifted] += 0.5  # a class-dependent mean shift: the model has something to learn
        return x, y

    x_train, y_train = split(n_train)
    x_val, y_val = split(n_val)
    return x_train, y_train, x_val, y_val


def bench_config(epochs: int, config_overrides: Mapping[str, Any] | None = None) -> dict:
    """The run config both sides use: schema defaults, then the benchmark's settings, then overrides.

    Benchmark settings: ``augment_factor`` 1 (no augmentation), ``early_stopping_patience``
    = ``epochs`` (every epoch runs), ``mixed_precision`` 'off', and ``warmup_epochs`` at most
    ``epochs`` (the schema default of 5 would be invalid for a shorter run).

    Args:
        epochs: epochs per run (>= 2: epoch 1 is excluded from the steady-state time).
        config_overrides: schema keys to change (e.g. a tiny model for tests); not ``epochs``.

    Returns:
        A flat config dict, checked by ``training.resolve_training_config``.
    """
    from nexara_lib.config import SCHEMA
    from nexara_lib.training.train import resolve_training_config

    check_int("epochs", epochs, 2)
    overrides = dict(config_overrides or {})
    unknown = sorted(k for k in overrides if k not in SCHEMA)
    if unknown:
        raise ValueError(f"config_overrides has unknown parameter(s) {unknown}; use keys of params.SCHEMA")
    reserved = sorted(k for k in overrides if k in _RESERVED_KEYS)
    if reserved:
        raise ValueError(f"config_overrides must not set {reserved}; pass epochs=... to bench_training instead")
    config = {k: p.default for k, p in SCHEMA.items()}
    config.update(
        augment_factor=1,
        early_stopping_patience=epochs,
        epochs=epochs,
        mixed_precision="off",
        warmup_epochs=min(int(SCHEMA["warmup_epochs"].default), epochs),
    )
    config.update(overrides)
    resolve_training_config(config)  # a bad value fails here, before anything trains
    return config


def _steady(epoch_seconds: list[float]) -> float:
    """Mean seconds of epochs 2..N (epoch 1 includes tracing)."""
    return float(np.mean(epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds))


def _fit_wall_per_epoch(fit_seconds: float, epoch_seconds: list[float]) -> float:
    """``fit`` wall time minus epoch 1, per remaining epoch: also counts the epoch-end callbacks
    that run after an epoch clock (checkpoint, TensorBoard) and fit's own start/end work."""
    if len(epoch_seconds) < 2:
        return float(fit_seconds)
    return float((fit_seconds - epoch_seconds[0]) / (len(epoch_seconds) - 1))


def _one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(2, dtype=np.float32)[y]


def _run_bare(x_train, y_train, x_val, y_val, config: Mapping[str, Any], seed: int) -> dict:
    """Plain compile + ``model.fit`` of the configured model; also probes the per-epoch extras of ours."""
    import keras

    from nexara_lib.runtime import configure_precision, set_seed
    from nexara_lib.training.losses import FocalLoss
    from nexara_lib.training.models import create_sequence_model, model_params_from_config
    from nexara_lib.training.monitor import per_class_metrics
    from nexara_lib.training.schedule import make_optimizer
    from nexara_lib.training.train import predict_proba

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    keras.backend.clear_session()
    set_seed(seed)
    configure_precision(config["mixed_precision"])
    model = create_sequence_model(config["model"], x_train.shape[1:], **model_params_from_config(config))
    model.compile(
        optimizer=make_optimizer(config["optimizer"], config["learning_rate"], config["gradient_clip_norm"]),
        loss=FocalLoss(config["focal_gamma"], alpha=0.5, label_smoothing=config["label_smoothing"]),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    clock = EpochTimes()
    t0 = time.perf_counter()
    model.fit(
        x_train,
        _one_hot(y_train),
        validation_data=(x_val, _one_hot(y_val)),
        batch_size=config["batch_size"],
        epochs=config["epochs"],
        shuffle=True,
        verbose=0,
        callbacks=[clock],
    )
    fit_seconds = time.perf_counter() - t0

    # What PerClassMonitor does each epoch (a validation predict + metrics), timed on this trained model;
    # the first call traces the predict function (ours pays that once, in epoch 1).
    monitor_calls = []
    for _ in range(MONITOR_PROBE_CALLS):
        t0 = time.perf_counter()
        per_class_metrics(y_val, predict_proba(model, x_val))
        monitor_calls.append(time.perf_counter() - t0)
    # EarlyStopping(restore_best_weights=True) copies the weights whenever the monitored metric improves
    t0 = time.perf_counter()
    model.get_weights()
    weights_copy_seconds = time.perf_counter() - t0
    return {
        "seconds_per_epoch": _steady(clock.seconds),
        "epoch_seconds": clock.seconds,
        "fit_seconds": fit_seconds,
        "probes": {
            "monitor_first_call_seconds": monitor_calls[0],
            "monitor_seconds_per_call": float(statistics.median(monitor_calls[1:])),
            "weights_copy_seconds": weights_copy_seconds,
        },
        "n_parameters": int(model.count_params()),
    }


def _run_ours(x_train, y_train, x_val, y_val, config: Mapping[str, Any], seed: int) -> dict:
    """``train_sequence_model`` into a temporary folder; reads its timings and history."""
    import keras

    from nexara_lib.runtime import set_seed
    from nexara_lib.training.train import train_sequence_model

    keras.backend.clear_session()
    set_seed(seed)
    with tempfile.TemporaryDirectory(prefix="nexara-bench-") as out_dir:
        t0 = time.perf_counter()
        result = train_sequence_model(x_train, y_train, x_val, y_val, config, out_dir=out_dir, verbose=0)
        call_seconds = time.perf_counter() - t0
    timings = dict(result["timings"])
    epoch_seconds = [float(s) for s in result["history"]["epoch_seconds"]]
    return {
        "seconds_per_epoch": float(timings["seconds_per_epoch"]),
        "epoch_seconds": epoch_seconds,
        "fit_seconds": float(timings.get("fit_seconds", float("nan"))),
        "call_seconds": call_seconds,
        "timings": timings,  # every timing key train_sequence_model reports
        "epochs_run": int(result.get("epochs_run", len(epoch_seconds))),
    }


def _machine() -> dict:
    """CPU, platform and package facts that decide how fast an epoch can be."""
    import tensorflow as tf

    from nexara_lib.run.runinfo import package_versions

    versions = package_versions()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": versions["python"],
        "tensorflow": versions["tensorflow"],
        "keras": versions["keras"],
        "numpy": versions["numpy"],
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def bench_training(
    out_path: str | Path,
    n_train: int = 512,
    n_val: int = 128,
    timesteps: int = 20,
    feature_dim: int = 1024,
    epochs: int = 6,
    seed: int = 0,
    config_overrides: Mapping[str, Any] | None = None,
    repeats: int = 3,
) -> dict:
    """Time our training loop against a bare ``model.fit`` and write the JSON report.

    Each repeat runs bare first, then ours, on the same arrays and config (so the two
    sides interleave). A side's ``seconds_per_epoch`` is the mean of its epochs 2..N,
    and over repeats the minimum of those (the least disturbed run: CPUs may be
    shared). ``ratio`` = ours / bare of those numbers. Two cross-checks are reported
    beside it: the ratio of the medians of all steady-state epochs, and the ratio of
    ``fit`` wall time per epoch (which also counts epoch-end callbacks that run
    after our epoch clock, e.g. checkpoint and TensorBoard writes).

    Args:
        out_path: JSON file to write (folders are created; written atomically).
        n_train: training clips.
        n_val: validation clips.
        timesteps: T, steps per clip.
        feature_dim: D, features per step.
        epochs: epochs per run (>= 2).
        seed: seed for the data and for both runs.
        config_overrides: schema keys to change on top of the defaults (e.g. a tiny model).
        repeats: how many (bare, ours) pairs to run.

    Returns:
        The report that was written (also has ``"path"``).
    """
    check_int("repeats", repeats, 1)
    config = bench_config(epochs, config_overrides)
    x_train, y_train, x_val, y_val = make_bench_data(n_train, n_val, timesteps, feature_dim, seed)
    from nexara_lib.io import write_json_atomic
    from nexara_lib.training.train import resolve_training_config

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = load_average()
    t0 = time.perf_counter()
    runs: dict[str, list[dict]] = {"bare": [], "ours": []}
    for _ in range(repeats):
        runs["bare"].append(_run_bare(x_train, y_train, x_val, y_val, config, seed))
        runs["ours"].append(_run_ours(x_train, y_train, x_val, y_val, config, seed))
    total_seconds = time.perf_counter() - t0

    best = {side: min(results, key=lambda r: r["seconds_per_epoch"]) for side, results in runs.items()}
    ours, bare = best["ours"]["seconds_per_epoch"], best["bare"]["seconds_per_epoch"]
    medians = {
        side: float(np.median([s for r in results for s in r["epoch_seconds"][1:]])) for side, results in runs.items()
    }
    fit_wall = {
        side: min(_fit_wall_per_epoch(r["fit_seconds"], r["epoch_seconds"]) for r in results)
        for side, results in runs.items()
    }
    probes = best["bare"]["probes"]
    overhead = ours - bare
    extra_timings = {k: v for k, v in best["ours"]["timings"].items() if k not in ("seconds_per_epoch",)}
    # what ours does at every epoch end, per epoch: the monitor's predict (probed on the bare model) and
    # any cumulative per-epoch cost train_sequence_model reports (e.g. checkpoint writes)
    components = {"per_class_monitor": probes["monitor_seconds_per_call"]}
    components.update(
        {
            k.removesuffix("_seconds"): float(extra_timings[k]) / best["ours"]["epochs_run"]
            for k in PER_EPOCH_TIMING_KEYS
            if isinstance(extra_timings.get(k), (int, float))
        }
    )
    fit_wall_overhead = fit_wall["ours"] - fit_wall["bare"]
    # the headline ratio counts everything fit does per epoch on both sides (epoch-end callbacks included)
    ratio = fit_wall["ours"] / fit_wall["bare"]
    timings = best["ours"]["timings"]
    commits = int(timings.get("checkpoint_commits", 0))
    checkpoint = {
        "commits": commits,
        "seconds": float(timings.get("checkpoint_seconds", 0.0)),
        "seconds_per_commit": float(timings["checkpoint_seconds"]) / commits if commits else None,
        "interval_s": float(config["checkpoint_interval_s"]),
    }
    report = {
        "benchmark": "training_epoch_time",
        "question": "steady-state seconds per epoch of train_sequence_model vs a bare model.fit on the same arrays",
        "started_at": started_at,
        "total_seconds": total_seconds,
        "machine": {**_machine(), "load_average_before": load_before, "load_average_after": load_average()},
        "data": {
            "n_train": n_train,
            "n_val": n_val,
            "timesteps": timesteps,
            "feature_dim": feature_dim,
            "dtype": "float32",
            "signal": "class 1: +0.5 on the first quarter of features",
            "seed": seed,
        },
        "config": resolve_training_config(config),
        "config_overrides": dict(config_overrides or {}),
        "n_parameters": best["bare"]["n_parameters"],
        "method": {
            "run_order": f"each repeat: {' then '.join(RUN_ORDER)}; clear_session + set_seed(seed) before each run",
            "repeats": repeats,
            "ratio": "fit wall time minus epoch 1, per remaining epoch, ours / bare (min over repeats): counts "
            "every epoch-end callback (per-class monitor, early stopping, checkpoint, TensorBoard)",
            "steady_state": "epochs 2..N (epoch 1 includes graph tracing)",
            "aggregate_over_repeats": "min of the per-run steady-state values (the least disturbed run)",
            "ours_epoch_clock": "train_sequence_model's epoch_seconds; callbacks placed after its clock "
            "(checkpoint, TensorBoard) do their epoch-end work outside it: see fit_wall",
            "bare": "create_sequence_model + compile (same focal loss, optimizer at a constant learning rate, "
            "accuracy) + model.fit(validation_data, shuffle) with one epoch-timing callback",
            "ours": "train_sequence_model(verbose=0), epoch_seconds from its history",
        },
        "ours": {
            "seconds_per_epoch": ours,
            "epoch_seconds": best["ours"]["epoch_seconds"],
            "fit_seconds": best["ours"]["fit_seconds"],
            "call_seconds": best["ours"]["call_seconds"],
            "epochs_run": best["ours"]["epochs_run"],
            "all_runs_seconds_per_epoch": [r["seconds_per_epoch"] for r in runs["ours"]],
        },
        "bare": {
            "seconds_per_epoch": bare,
            "epoch_seconds": best["bare"]["epoch_seconds"],
            "fit_seconds": best["bare"]["fit_seconds"],
            "all_runs_seconds_per_epoch": [r["seconds_per_epoch"] for r in runs["bare"]],
        },
        "ratio": ratio,
        "seconds_per_epoch": fit_wall,
        "target": TARGET_RATIO,
        "target_met": bool(ratio <= TARGET_RATIO),
        "cross_checks": {
            "median_epoch_seconds": medians,
            "ratio_of_medians": medians["ours"] / medians["bare"],
            "fit_wall_seconds_per_epoch": fit_wall,
            "epoch_clock_seconds_per_epoch": {"ours": ours, "bare": bare},
            "ratio_epoch_clock": ours / bare,
        },
        "overhead": {
            "seconds_per_epoch": overhead,  # ours - bare, epoch clocks
            "fraction_of_bare": overhead / bare,
            "fit_wall_seconds_per_epoch": fit_wall_overhead,  # ours - bare, fit wall time (counts everything)
            "components_seconds_per_epoch": components,
            "per_class_monitor_first_call_seconds": probes["monitor_first_call_seconds"],  # traces predict, epoch 1
            "best_weights_copy_seconds": probes["weights_copy_seconds"],  # early stopping, on improving epochs
            # fit-wall overhead not in the components: TensorBoard, early stopping, the learning-rate
            # schedule, the epoch clock, fit's start/end work (best-weight restore) and noise
            "unexplained_seconds_per_epoch": fit_wall_overhead - sum(components.values()),
            "ours_other_timings": extra_timings,  # one-off costs of train_sequence_model (not per epoch)
            # a commit writes weights + optimizer state; at most one per checkpoint_interval_s of training
            "checkpoint": checkpoint,
        },
    }
    path = Path(out_path)
    write_json_atomic(path, report)
    print(
        f"training bench: ours {fit_wall['ours']:.3f} s/epoch, bare model.fit {fit_wall['bare']:.3f} s/epoch, "
        f"ratio {ratio:.2f} (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
        f"epoch-clock ratio {report['cross_checks']['ratio_epoch_clock']:.2f}; per epoch: per-class monitor "
        f"~{components['per_class_monitor']:.3f} s"
        + (f", checkpoint ~{components['checkpoint']:.3f} s" if "checkpoint" in components else "")
        + f" -> {path}",
        flush=True,
    )
    return {**report, "path": str(path)}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m benchmarks.bench_training``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_training",
        description="Epoch time of train_sequence_model vs a bare model.fit (JSON).",
    )
    parser.add_argument("--out", default="outputs/bench/training.json", help="JSON report to write")
    parser.add_argument("--n-train", type=int, default=512, help="training clips")
    parser.add_argument("--n-val", type=int, default=128, help="validation clips")
    parser.add_argument("--timesteps", type=int, default=20, help="T, steps per clip")
    parser.add_argument("--feature-dim", type=int, default=1024, help="D, features per step")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (>= 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="(bare, ours) pairs; the min per side is reported")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; 2 on a bad argument."""
    return run_cli(
        build_parser(),
        lambda args: bench_training(
            args.out,
            n_train=args.n_train,
            n_val=args.n_val,
            timesteps=args.timesteps,
            feature_dim=args.feature_dim,
            epochs=args.epochs,
            seed=args.seed,
            repeats=args.repeats,
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
