"""Ablations: several training recipes on the same features, seeds and folds, side by side.

The run's own recipe is always the baseline ``default``; each file of ``ablation_configs``
changes some training keys of it (``params/ablation_overregularized.yaml`` is the seed
team's failed configuration). Every (configuration, seed, fold) unit trains with
``train_sequence_model`` on the fold's ``fit`` clips, early-stops on its inner validation
and is scored once on the fold's held-out clips (``cross_validation``). The test split is
never used here.

Units are resumable: a finished unit is stored as ``unit.json`` (metrics and held-out
predictions, no model) and skipped on a rerun with the same configuration and data; an
interrupted unit continues from its training checkpoint. They train in this process, in worker
processes or as Ray tasks (``study_units``, ``study_ray``); ``run_studies`` runs the units of
several studies together (recipe selection: one study per stream set). The results
(``RecipeStudy``, tables, paired comparisons) are in ``study_results``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nexara_lib.config import load_yaml, stage_keys
from nexara_lib.evaluation.metrics import binary_metrics
from nexara_lib.io import read_json, to_jsonable, write_json_atomic
from nexara_lib.training.folds import Fold, grouped_folds, holdout_fold
from nexara_lib.training.study_ray import ray_unit_results
from nexara_lib.training.study_results import BASELINE, STUDY_METRICS, RecipeStudy
from nexara_lib.training.study_units import StudyExecution, UnitJob, in_process_results, longest_first, worker_results
from nexara_lib.training.train import NOT_FINGERPRINTED

_TRAINING_KEYS = stage_keys("training")


def load_ablation_config(path: str | Path) -> tuple[str, dict]:
    """(name, overrides) of one ablation file: its stem minus 'ablation_', and its training keys.

    An ablation compares recipes on the same features, so a key of another stage (backbone,
    frames_per_clip, data_dir, ...) is an error, as is an empty file.
    """
    path = Path(path)
    overrides = load_yaml(path)
    other = sorted(k for k in overrides if k not in _TRAINING_KEYS)
    if other:
        raise ValueError(
            f"ablation file {str(path)!r} sets {other}, which are not training keys; an ablation "
            "trains on the run's features, so it may only change training keys (model, dropout, ...)"
        )
    if not overrides:
        raise ValueError(f"ablation file {str(path)!r} changes nothing; give it at least one training key")
    name = path.stem.removeprefix("ablation_")
    if name == BASELINE:
        raise ValueError(
            f"ablation file {str(path)!r} would be named {BASELINE!r}, the name of the run's own "
            "recipe; rename the file"
        )
    return name, overrides


def study_configs(params: Mapping[str, Any]) -> dict[str, dict]:
    """{name: full parameter mapping}: the run's recipe as 'default', then each ablation file's variant."""
    configs = {BASELINE: dict(params)}
    for path in params.get("ablation_configs") or []:
        name, overrides = load_ablation_config(path)
        if name in configs:
            raise ValueError(f"two ablation files are named {name!r}; ablation names must be unique")
        configs[name] = {**params, **overrides}
    return configs


def changed_keys(configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """The training keys each configuration changes relative to 'default' (one row per key)."""
    base = configs[BASELINE] if BASELINE in configs else next(iter(configs.values()))
    changed = [k for k in _TRAINING_KEYS if any(cfg.get(k) != base.get(k) for cfg in configs.values())]
    rows = {
        key: {
            name: str(cfg.get(key)) if name == BASELINE or cfg.get(key) != base.get(key) else ""
            for name, cfg in configs.items()
        }
        for key in changed
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(configs))


@dataclasses.dataclass
class Pool:
    """The development pool: train + val clips of the manifest with their features."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    clip_ids: list
    is_train: np.ndarray

    def fingerprint(self) -> str:
        digest = hashlib.sha1(np.ascontiguousarray(self.x).tobytes())
        digest.update(self.y.tobytes())
        digest.update("\n".join(map(str, self.clip_ids)).encode())
        digest.update("\n".join(self.groups).encode())
        return digest.hexdigest()


def development_pool(manifest: pd.DataFrame, streams, cache_root: str | Path) -> Pool:
    """Features of the train and val clips (never test), with their source groups.

    Args:
        manifest: the run's usable clips.
        streams: what to load: a ``FeatureStream`` or a ``StreamSet`` (anything with ``load(rows, cache_root)``).
        cache_root: the feature cache folder.
    """
    rows = manifest[manifest["split"].isin(["train", "val"])]
    if rows.empty:
        raise ValueError("the manifest has no train or val clips to cross-validate on; re-run the audit")
    x, y, ids = streams.load(rows, cache_root)
    by_id = rows.set_index(rows["clip_id"].astype(str))
    groups = by_id.loc[ids, "group"].astype(str).to_numpy()
    is_train = (by_id.loc[ids, "split"] == "train").to_numpy()
    return Pool(x, y, groups, ids, is_train)


def plan_folds(pool: Pool, cv_folds: int, seed: int) -> list[Fold]:
    """k grouped folds when cv_folds >= 2, else the fixed split as one holdout fold."""
    if cv_folds >= 2:
        return grouped_folds(pool.y, pool.groups, cv_folds, seed=seed)
    return [holdout_fold(pool.y, pool.groups, pool.is_train, seed=seed)]


def _unit_fingerprint(cfg: Mapping, seed: int, fold: Fold, pool_fingerprint: str) -> str:
    training = {k: cfg[k] for k in _TRAINING_KEYS if k not in NOT_FINGERPRINTED}
    payload = json.dumps(
        to_jsonable(
            {
                "training": training,
                "seed": seed,
                "fit": fold.fit,
                "inner": fold.inner_val,
                "evaluate": fold.evaluate,
                "pool": pool_fingerprint,
            }
        ),
        sort_keys=True,
    )
    return hashlib.sha1(payload.encode()).hexdigest()


@dataclasses.dataclass
class StudyPlan:
    """One study to run: its pool, configurations, seeds and folds, and where its units go."""

    pool: Pool
    configs: Mapping[str, Mapping]
    seeds: list[int]
    cv_folds: int
    out_dir: Path
    fold_seed: int
    folds: list[Fold]
    tag: str = ""  # shown after the configuration's name in progress lines and errors (a stream set)

    def units(self) -> list[tuple[str, int, Fold]]:
        return [(name, seed, fold) for name in self.configs for seed in self.seeds for fold in self.folds]


def plan_study(
    pool: Pool, configs: Mapping[str, Mapping], seeds, cv_folds: int, out_dir, fold_seed: int = 0, tag: str = ""
) -> StudyPlan:
    """Check a study's arguments and plan its folds (see ``run_recipe_study``)."""
    if not configs:
        raise ValueError("run_recipe_study needs at least one configuration (normally 'default', the run's recipe)")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_recipe_study needs at least one seed")
    folds = plan_folds(pool, cv_folds, fold_seed)
    return StudyPlan(pool, dict(configs), seeds, cv_folds, Path(out_dir), fold_seed, folds, tag)


def run_recipe_study(
    pool: Pool,
    configs: Mapping[str, Mapping],
    seeds,
    cv_folds: int,
    out_dir: str | Path,
    fold_seed: int = 0,
    progress: bool = True,
    execution: StudyExecution | None = None,
) -> RecipeStudy:
    """Train every (configuration, seed, fold) unit (or reuse it) and collect held-out metrics.

    Args:
        pool: the development pool (``development_pool``).
        configs: name -> parameter mapping (``study_configs``); must include 'default'.
        seeds: training seeds; each configuration runs with every one.
        cv_folds: k >= 2 for grouped k-fold CV, 0 for the fixed split (scored on val).
        out_dir: one folder per unit: ``<config>/seed<s>/<fold>/``; also ``study.json``.
        fold_seed: seeds the fold assignment (the same folds for every configuration and seed).
        progress: print a line per finished unit.
        execution: where the units train (``study_units.StudyExecution``; default: in this process).

    Returns:
        A ``RecipeStudy``; ``study.json`` holds its runs and summary.
    """
    plan = plan_study(pool, configs, seeds, cv_folds, out_dir, fold_seed)
    return run_studies([plan], execution, progress)[0]


def run_units(
    jobs: list[UnitJob], pools: Mapping[str, Pool], execution: StudyExecution | None = None
) -> Iterator[tuple[UnitJob, dict]]:
    """Train ``jobs`` where ``execution`` says (default: in this process, in the order given; elsewhere the
    longest first) and yield ``(job, unit record)`` as each finishes.

    Raises ``study_units.StudyUnitError`` naming a unit that failed, or a worker that died; the others
    were stopped.
    """
    execution = execution or StudyExecution()
    if not jobs:
        return iter(())
    if execution.executor == "ray":
        return ray_unit_results(longest_first(jobs), pools, execution)
    if execution.workers > 0:
        return worker_results(longest_first(jobs), pools, execution.workers)
    return in_process_results(jobs, pools)


def run_studies(
    plans: list[StudyPlan], execution: StudyExecution | None = None, progress: bool = True
) -> list[RecipeStudy]:
    """Run the units of several studies together (``run_recipe_study`` for each), so that workers stay
    busy across studies; finished units are reused, the rest train where ``execution`` says.

    Progress: one line per unit as it finishes, ``[k/N]`` counting finished units of all studies.
    Raises ``study_units.StudyUnitError`` naming a unit that failed (finished units are kept).
    """
    started = time.perf_counter()
    jobs, done = [], {}
    for index, plan in enumerate(plans):
        pool_fingerprint = plan.pool.fingerprint()
        for name, seed, fold in plan.units():
            unit_dir = plan.out_dir / name / f"seed{seed}" / fold.name
            fingerprint = _unit_fingerprint(plan.configs[name], seed, fold, pool_fingerprint)
            unit = read_json(unit_dir / "unit.json")
            if unit is not None and unit.get("fingerprint") == fingerprint:
                done[(index, name, seed, fold.name)] = (unit, True)
                continue
            if unit is not None:  # stale: other parameters or data
                shutil.rmtree(unit_dir)
            label = _label(plan, name, seed, fold.name)
            jobs.append(UnitJob(str(index), name, seed, fold, plan.configs[name], str(unit_dir), fingerprint, label))
    total = sum(len(plan.units()) for plan in plans)
    for count, ((index, name, seed, fold_name), (unit, _)) in enumerate(done.items(), start=1):
        if progress:
            _progress(count, total, _label(plans[index], name, seed, fold_name), unit, None, started)
    pools = {str(index): plan.pool for index, plan in enumerate(plans)}
    for count, (job, unit) in enumerate(run_units(jobs, pools, execution), start=len(done) + 1):
        write_json_atomic(Path(job.unit_dir) / "unit.json", unit)
        done[(int(job.pool), job.config, job.seed, job.fold.name)] = (unit, False)
        if progress:
            _progress(count, total, job.label, unit, unit["seconds"], started)
    return [_collect(plan, index, done) for index, plan in enumerate(plans)]


def _label(plan: StudyPlan, name: str, seed: int, fold_name: str) -> str:
    return f"{name}{f' | {plan.tag}' if plan.tag else ''} seed {seed} {fold_name}"


def _progress(count: int, total: int, label: str, unit: dict, seconds: float | None, started: float) -> None:
    metrics = binary_metrics(np.asarray(unit["y"]), np.asarray(unit["prob"]), 0.5)
    took = "reused" if seconds is None else f"{seconds:.0f} s"
    print(
        f"[{count}/{total}] {label}: accuracy {metrics['accuracy']:.3f}, violent {metrics['acc_violent']:.3f}, "
        f"non-violent {metrics['acc_nonviolent']:.3f} ({took}); {time.perf_counter() - started:.0f} s elapsed",
        flush=True,
    )


def _collect(plan: StudyPlan, index: int, done: Mapping[tuple, tuple[dict, bool]]) -> RecipeStudy:
    """The study's tables from its finished units (in planned order), written as study.json and runs.csv."""
    group_of = dict(zip(plan.pool.clip_ids, plan.pool.groups, strict=True))
    runs: list[dict] = []
    predictions: list[dict] = []
    for name, seed, fold in plan.units():
        unit, reused = done[(index, name, seed, fold.name)]
        metrics = binary_metrics(np.asarray(unit["y"]), np.asarray(unit["prob"]), 0.5)
        runs.append(
            {
                "config": name,
                "seed": seed,
                "fold": fold.name,
                "n_evaluated": len(unit["y"]),
                **{m: metrics[m] for m in (*STUDY_METRICS, "balanced_accuracy")},
                **{k: unit[k] for k in ("best_epoch", "epochs_run", "stop_reason", "seconds")},
                "reused": reused,
            }
        )
        predictions.extend(
            {"config": name, "seed": seed, "fold": fold.name, "clip_id": c, "group": group_of[c], "y": y, "prob": p}
            for c, y, p in zip(unit["clip_ids"], unit["y"], unit["prob"], strict=True)
        )
    study = RecipeStudy(
        pd.DataFrame(runs),
        pd.DataFrame(predictions),
        changed_keys(plan.configs),
        pd.DataFrame([f.describe(plan.pool.y) for f in plan.folds]),
        plan.seeds,
        plan.cv_folds,
    )
    write_json_atomic(
        plan.out_dir / "study.json",
        {
            "cv_folds": plan.cv_folds,
            "seeds": plan.seeds,
            "fold_seed": plan.fold_seed,
            "configs": {n: {k: c[k] for k in _TRAINING_KEYS} for n, c in plan.configs.items()},
            "summary": study.summary_numbers(),
            "runs": study.runs.to_dict(orient="records"),
        },
    )
    study.runs.to_csv(plan.out_dir / "runs.csv", index=False)
    return study


def study_for_run(
    manifest: pd.DataFrame,
    streams,
    cache_root: str | Path,
    params: Mapping[str, Any],
    out_dir: str | Path,
    progress: bool = True,
) -> RecipeStudy | None:
    """The run's study (``cv_folds``, ``ablation_configs``, ``ablation_seeds``; units train where
    ``study_executor``/``study_workers`` say), or None when neither cross-validation nor an ablation is
    asked for."""
    if params["cv_folds"] < 2 and not params["ablation_configs"]:
        return None
    configs = study_configs(params)  # bad ablation files fail here, before any training
    pool = development_pool(manifest, streams, cache_root)
    return run_recipe_study(
        pool,
        configs,
        params["ablation_seeds"],
        params["cv_folds"],
        out_dir,
        fold_seed=params["seed"],
        progress=progress,
        execution=StudyExecution.from_params(params),
    )
