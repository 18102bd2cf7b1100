"""Layered, validated run parameters: files left to right, then ``--set`` overrides.

Relative paths in a YAML file are resolved against that file's folder, so a parameter file
means the same thing from any working directory; relative paths given on the command line
are resolved against the current directory. Beyond the per-key checks of
``nexara_lib.config``, this module checks the keys against each other and against the
registries (backbones, models, transforms), before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nexara_lib.audit.groups import read_groups_csv
from nexara_lib.config import SCHEMA, Params, coerce, load_yaml, param_fail
from nexara_lib.features.backbones import available_backbones
from nexara_lib.features.stream_set import StreamSet
from nexara_lib.transforms.registry import check_transform_names


def _check_consistency(values: dict, sources: dict) -> None:
    """Rules across keys (or items) that the per-key ranges of the schema cannot express."""

    def need(cond, key, message):
        if not cond:
            param_fail(key, sources.get(key, "default"), message)

    need(
        values["data_dir"] is not None or values["synthetic_clips"] > 0,
        "data_dir",
        "no data: set data_dir to a dataset folder, or synthetic_clips > 0 for generated clips",
    )
    need(
        values["data_dir"] is None or values["synthetic_clips"] == 0,
        "synthetic_clips",
        "set either data_dir or synthetic_clips, not both",
    )
    fr = values["split_fractions"]
    need(
        len(fr) == 3 and all(f > 0 for f in fr) and abs(sum(fr) - 1) < 1e-6,
        "split_fractions",
        f"expected three positive fractions summing to 1, got {fr}",
    )
    need(
        values["frame_augment_copies"] == 0
        or len(set(values["frame_augment_ops"])) == len(values["frame_augment_ops"]) > 0,
        "frame_augment_ops",
        "needs at least one op, each once, when frame_augment_copies > 0",
    )
    need(values["cv_folds"] == 0 or values["cv_folds"] >= 2, "cv_folds", "must be 0 (fixed split) or k >= 2 folds")
    need(
        values["select_recipe"] != "cv" or values["cv_folds"] >= 2,
        "select_recipe",
        "'cv' ranks recipes by grouped cross-validation: set cv_folds to k >= 2 (e.g. 5)",
    )
    need(
        len(values["ablation_seeds"]) > 0 and all(v >= 0 for v in values["ablation_seeds"]),
        "ablation_seeds",
        "needs at least one non-negative seed",
    )
    need(
        values["detect_confirm_k"] <= values["detect_confirm_n"],
        "detect_confirm_k",
        f"k of n: detect_confirm_k ({values['detect_confirm_k']}) cannot exceed detect_confirm_n "
        f"({values['detect_confirm_n']}), the number of recent windows it counts in",
    )
    variants = values["export_variants"]
    need(
        len(variants) > 0 and set(variants) <= {"float32", "float16", "int8"} and len(set(variants)) == len(variants),
        "export_variants",
        f"give each of float32, float16, int8 at most once, got {variants}",
    )
    need(
        values["detect_head_variant"] in variants,
        "detect_head_variant",
        f"the detector runs an exported variant: {values['detect_head_variant']!r} "
        f"is not in export_variants {variants}",
    )
    for csv in values["groups_csv"] or []:  # checked with the other parameters: exit 2 before any clip is probed
        try:
            read_groups_csv(csv)
        except ValueError as err:
            param_fail("groups_csv", sources.get("groups_csv", "default"), str(err))
    _check_registry_names(values, sources)


def _check_registry_names(values: dict, sources: dict) -> None:
    """Names that pick a registry entry must exist now, not when notebook 05 gets to them."""
    # The model registry imports Keras: loaded when parameters are checked, not when this module is
    # imported, so `nexara --help`, `nexara params` and the report renderer start without TensorFlow.
    from nexara_lib.training.models import available_models

    def known(key, names, registry):
        unknown = [n for n in names if n not in registry]
        if unknown:
            param_fail(key, sources.get(key, "default"), f"unknown {unknown}; available: {sorted(registry)}")

    known("backbone", [values["backbone"]], available_backbones())
    known("model", [values["model"]], available_models())
    known("baseline_models", values["baseline_models"], available_models())
    for key, specs in (("streams", [values["streams"]]), ("candidate_streams", values["candidate_streams"])):
        for spec in specs:
            try:
                StreamSet.parse(spec, values)
            except ValueError as err:
                param_fail(key, sources.get(key, "default"), str(err))
    # one transform registry: each list takes the transforms of one level and use
    for key, level, use, what in (
        ("augment_ops", "feature", "augment", "feature augmentation ops"),
        ("frame_augment_ops", "frame", "augment", "frame augmentation ops"),
        ("tta_transforms", None, "tta", "TTA views"),
    ):
        try:
            if values[key]:  # an empty list is judged by the rules of its stage
                check_transform_names(values[key], level=level, use=use, what=what)
        except ValueError as err:
            param_fail(key, sources.get(key, "default"), str(err))
    known("ensemble_members", [m["model"] for m in values["ensemble_members"]], available_models())
    known(
        "ensemble_members",
        [m["backbone"] for m in values["ensemble_members"] if "backbone" in m],
        available_backbones(),
    )
    if "identity" not in values["tta_transforms"]:
        param_fail(
            "tta_transforms",
            sources.get("tta_transforms", "default"),
            "must include 'identity': TTA is compared with the model without it",
        )


def resolve_params(
    files: Iterable[str | Path] = (), overrides: Mapping[str, Any] | None = None, overrides_source: str = "--set"
) -> Params:
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
