"""Notebook 06 glue: train (or reload) each ensemble member on its feature stream, fit the combination
on validation, compare it with the best single member on test, and save the deployable artifact."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from matplotlib.figure import Figure

from nexara_lib.config import stage_keys
from nexara_lib.evaluation.ensemble import (
    EnsembleArtifact,
    choose_best_member,
    ensemble_predict,
    error_correlation,
    fit_ensemble_weights,
    fit_stacking,
    pairwise_disagreement,
    stacking_predict,
)
from nexara_lib.evaluation.ensemble import compare_with_best_member as compare
from nexara_lib.evaluation.metrics import binary_metrics
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.evaluation.stats import (
    before_after_rows,
    decision_in_words,
    describe_comparison,
    difference_rows,
    mcnemar_in_words,
)
from nexara_lib.evaluation.thresholds import choose_threshold
from nexara_lib.features.stream_set import StreamSet
from nexara_lib.io import read_json, write_json_atomic
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import load_manifest, load_splits, member_streams, run_recipe
from nexara_lib.stages.headline import record_headline, record_summary
from nexara_lib.training.checkpoints import training_fingerprint
from nexara_lib.training.model_files import CorruptModelFile, load_sequence_model
from nexara_lib.training.train import predict_proba, train_sequence_model


def member_name(index: int, member: Mapping, params: Mapping) -> str:
    streams = member_streams(member, params)
    return f"m{index + 1}-{member['model']}-{_streams_label(streams)}-seed{member.get('seed', params['seed'])}"


def _streams_label(streams: StreamSet) -> str:
    """The backbone for a whole-frame stream (as member names always read), else the stream set."""
    single = streams.single
    return single.backbone if single is not None and single.transform == "identity" else streams.name.replace(":", "-")


def _member_config(member: Mapping, params: Mapping) -> dict:
    return {**dict(params), "model": member["model"], "seed": member.get("seed", params["seed"])}


def train_members(params: Mapping, layout: RunLayout, verbose: int = 0) -> list[dict]:
    """Train every member of ``params['ensemble_members']`` (a finished member with the same
    configuration is reloaded, so a crashed run resumes), then predict validation and test.

    Returns:
        One dict per member: name, model, backbone, model_path, val / test ``Predictions``,
        training seconds. Predictions cover the clips every member could score, in one order.
    """
    manifest = load_manifest(layout)
    recipe = run_recipe(params, layout)
    params = recipe.params  # members read the streams notebook 03 carried forward
    members = []
    for i, member in enumerate(params["ensemble_members"]):
        streams = member_streams(member, params)
        splits = load_splits(manifest, streams, layout)
        config = _member_config(member, params)
        out_dir = layout.ensemble_dir / member_name(i, member, params)
        fingerprint = _fingerprint(config, streams, splits)
        previous = read_json(out_dir / "training_results.json", {})
        model, source = None, "trained here"
        if _is_run_model(recipe, fingerprint, splits):  # the same recipe, seed and data as 03's model
            model = load_sequence_model(recipe.model_path)
            seconds = (
                read_json(recipe.model_path.parent / "training_results.json", {})
                .get("timings", {})
                .get("total_seconds")
            )
            source = "notebook 03's model (same recipe, seed and clips)"
        elif previous.get("fingerprint") == fingerprint and (out_dir / "model.keras").exists():
            try:
                model = load_sequence_model(out_dir / "model.keras")
                seconds = previous.get("timings", {}).get("total_seconds")
            except CorruptModelFile as err:  # a crash while saving it: train it again
                print(f"{err}; retraining member {member_name(i, member, params)}")
                (out_dir / "model.keras").unlink()
        if model is None:
            result = train_sequence_model(
                splits["train"].x, splits["train"].y, splits["val"].x, splits["val"].y, config, out_dir, verbose=verbose
            )
            model, seconds = result["model"], result["timings"]["total_seconds"]
            _stamp(out_dir / "training_results.json", fingerprint)
        members.append(
            {
                "name": member_name(i, member, params),
                "model": member["model"],
                "backbone": _streams_label(streams),
                "stream": streams,
                "source": source,
                "train_seconds": seconds,
                "model_path": str(recipe.model_path if source != "trained here" else out_dir / "model.keras"),
                "val": (splits["val"].clip_ids, splits["val"].y, predict_proba(model, splits["val"].x)),
                "test": (splits["test"].clip_ids, splits["test"].y, predict_proba(model, splits["test"].x)),
            }
        )
    return _align(members)


def _is_run_model(recipe, fingerprint: str, splits: Mapping) -> bool:
    """Whether a member with this fingerprint is notebook 03's model: no recipe selection, no frame-augmented
    training copies (members train on the clean clips), the same training keys, seed and streams, and the
    model is there. Training is deterministic when seeded, so training it again would give the same model."""
    params = recipe.params
    return (
        recipe.selection is None
        and not params["frame_augment_copies"]
        and recipe.model_path.is_file()
        and fingerprint == _fingerprint(params, recipe.streams, splits)
    )


def _fingerprint(config: Mapping, streams: StreamSet, splits: Mapping) -> str:
    """What makes a trained member: its training recipe, seed, input features and the clips it learns from
    (train and val: their ids and feature bytes, so changed data retrains it; not e.g. the ensemble method or
    TTA settings, so changing those reuses the trained members)."""
    keys = sorted(stage_keys("training")) + ["seed", "frames_per_clip", "image_size"]
    train, val = splits["train"], splits["val"]
    data = training_fingerprint({"clips": [train.clip_ids, val.clip_ids]}, [train.x, train.y, val.x, val.y])
    return json.dumps(
        {**{k: config[k] for k in keys}, "streams": [s.key for s in streams.streams], "data": data},
        sort_keys=True,
        default=str,
    )


def _stamp(path, fingerprint: str) -> None:
    results = read_json(path, {})
    results["fingerprint"] = fingerprint
    write_json_atomic(path, results)


def _align(members: list[dict]) -> list[dict]:
    for split in ("val", "test"):
        common = set.intersection(*(set(m[split][0]) for m in members))
        order = [cid for cid in members[0][split][0] if cid in common]
        for m in members:
            ids, y, prob = m[split]
            pos = {cid: j for j, cid in enumerate(ids)}
            keep = [pos[cid] for cid in order]
            m[split] = Predictions(split, np.asarray(y)[keep], np.asarray(prob)[keep], tuple(order))
    return members


def members_table(members: list[dict], threshold: float = 0.5) -> pd.DataFrame:
    """Validation and test metrics of each member at ``threshold``."""
    rows = []
    for m in members:
        row = {
            "member": m["name"],
            "model": m["model"],
            "backbone": m["backbone"],
            "source": m.get("source", ""),
            "train_s": m["train_seconds"],
        }
        for split in ("val", "test"):
            metrics = binary_metrics(m[split].y_true, m[split].prob, threshold)
            row.update(
                {
                    f"{split}_accuracy": metrics["accuracy"],
                    f"{split}_balanced_accuracy": metrics["balanced_accuracy"],
                    f"{split}_auc": metrics["roc_auc"],
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def combine_members(members: list[dict], params: Mapping) -> dict:
    """Fit the combination (``ensemble_method``) on validation only and apply it to test.

    'weighted': soft voting, weights on the simplex minimising validation log-loss; 'stacking':
    logistic regression on member logits, validation predictions out-of-fold.

    Returns:
        dict with val_prob, test_prob, the thresholds chosen on validation for the ensemble and for the
        best single member, the best member index, and the fitted weights / stacking model.
    """
    method = params["ensemble_method"]
    val_preds = [m["val"] for m in members]
    test_probs = [m["test"].prob for m in members]
    out = {"method": method, "weights": None, "stacking": None}
    if method == "stacking":
        # up to 5 out-of-fold splits, fewer on a small validation set (each fold needs both classes)
        smallest = int(min(np.bincount(val_preds[0].y_true, minlength=2)))
        stacking = fit_stacking(val_preds, n_splits=min(5, max(smallest, 2)), seed=params["seed"])
        out.update(
            stacking=stacking, val_prob=stacking.oof_prob, test_prob=stacking_predict(stacking.model, test_probs)
        )
    elif method == "weighted":
        weights = fit_ensemble_weights(val_preds)
        out.update(
            weights=weights,
            val_prob=ensemble_predict([p.prob for p in val_preds], weights),
            test_prob=ensemble_predict(test_probs, weights),
        )
    else:
        raise ValueError(f"ensemble_method must be 'weighted' or 'stacking', got {method!r}")
    best = choose_best_member(val_preds)
    out.update(
        best=best,
        threshold=choose_threshold(val_preds[0].with_prob(out["val_prob"])),
        best_threshold=choose_threshold(val_preds[best]),
    )
    return out


def combination_views(combo: dict, members: list[dict]) -> list:
    """The best single member and the ensemble threshold (both chosen on validation), and the fitted
    combination: a weight per member, or the stacking model's out-of-fold validation metrics."""
    names = [m["name"] for m in members]
    note = Markdown(
        f"Best single member on validation: **{names[combo['best']]}**; ensemble threshold "
        f"(chosen on validation): **{combo['threshold']:.3f}**."
    )
    if combo["weights"] is not None:
        table = pd.Series(combo["weights"], index=names, name="weight (fit on validation)")
    else:
        table = pd.Series(combo["stacking"].oof_metrics, name="stacking, out-of-fold on validation")
    return [note, table]


def compare_with_best_member(members: list[dict], combo: dict, params: Mapping) -> dict:
    """Ensemble vs the best single member on test (paired: McNemar, bootstrap CI), with a verdict."""
    best = members[combo["best"]]["test"]
    comparison = compare(
        best.y_true,
        best.prob,
        combo["test_prob"],
        threshold=combo["best_threshold"],
        threshold_ensemble=combo["threshold"],
        n_bootstrap=params["bootstrap_samples"],
        seed=params["seed"],
    )
    comparison["verdict"] = describe_comparison(
        "ensemble vs best single member", comparison["accuracy_diff_ci"], comparison["mcnemar"]["p_value"]
    )
    return comparison


def comparison_views(comparison: dict) -> list:
    return [
        Markdown(f"**{comparison['verdict']}**"),
        pd.DataFrame(before_after_rows(comparison, ("best single model", "ensemble"), ("best_member", "ensemble"))),
        pd.DataFrame(difference_rows(comparison)),
        pd.Series(
            mcnemar_in_words(comparison["mcnemar"], "the ensemble"),
            name="the same test clips, best member and ensemble",
        ),
    ]


def diversity_figure(members: list[dict], layout: RunLayout) -> Figure:
    """Pairwise disagreement and error correlation of the members' test predictions (each member at
    its own validation threshold), saved as ``ensemble_diversity``."""
    thresholds = [choose_threshold(m["val"]) for m in members]
    names = [m["name"] for m in members]
    preds = np.stack([m["test"].pred(t) for m, t in zip(members, thresholds, strict=True)])
    y = members[0]["test"].y_true
    fig = Figure(figsize=(5 + 2.2 * len(names), 4.2), layout="constrained")
    for ax, matrix, title in zip(
        fig.subplots(1, 2),
        (pairwise_disagreement(preds), error_correlation(y, preds)),
        ("pairwise disagreement (test)", "error correlation (test)"),
        strict=True,
    ):
        sns.heatmap(pd.DataFrame(matrix, names, names), annot=True, fmt=".2f", vmin=0, vmax=1, cmap="mako", ax=ax)
        ax.set_title(title)
    save_figure(fig, layout, "ensemble_diversity")
    return fig


def ensemble_artifact(members: list[dict], combo: dict) -> EnsembleArtifact:
    """The deployable ``EnsembleArtifact`` of a fitted combination."""
    paths = tuple(m["model_path"] for m in members)
    meta = {"members": [m["name"] for m in members], "backbones": [m["backbone"] for m in members]}
    if combo["stacking"] is not None:
        return EnsembleArtifact.from_stacking(paths, combo["stacking"].model, combo["threshold"], metadata=meta)
    return EnsembleArtifact(paths, combo["threshold"], weights=tuple(float(w) for w in combo["weights"]), metadata=meta)


def predict_with_ensemble(artifact_path, features_by_member) -> tuple[np.ndarray, np.ndarray]:
    """Score clips with a saved ensemble in one call: loads the artifact and its member models.

    Args:
        artifact_path: ``artifacts/models/ensemble/ensemble.json`` of a run.
        features_by_member: per member (in the artifact's order), its (N, T, D) features.
    Returns:
        (probability of violent (N,), 0/1 predictions at the threshold chosen on validation).
    """
    artifact = EnsembleArtifact.load(artifact_path)
    loaded = {}

    def member_predict(path, features):
        if path not in loaded:
            loaded[path] = load_sequence_model(path)
        return predict_proba(loaded[path], features)

    return artifact.predict(features_by_member, member_predict)


def member_features(members: list[dict], layout: RunLayout, split: str = "test") -> list[np.ndarray]:
    """Each member's input features for ``split``, in the clip order of ``members[i][split]``."""
    manifest = load_manifest(layout)
    out = []
    for member in members:
        fs = load_splits(manifest, member["stream"], layout, (split,))[split]
        position = {cid: j for j, cid in enumerate(fs.clip_ids)}
        out.append(fs.x[[position[cid] for cid in member[split].clip_ids]])
    return out


def save_ensemble(members: list[dict], combo: dict, comparison: dict, params: Mapping, layout: RunLayout) -> dict:
    """Save ``ensemble.json`` and ``ensemble_results.json``, publish the headline figures, and check
    that the saved artifact alone, loaded back, reproduces the ensemble's test predictions."""
    path = Path(layout.ensemble_dir) / "ensemble.json"
    ensemble_artifact(members, combo).save(path)
    reloaded_prob, _ = predict_with_ensemble(path, member_features(members, layout))
    check = {"max_abs_difference": float(np.abs(reloaded_prob - combo["test_prob"]).max())}
    names = [m["name"] for m in members]
    best = names[combo["best"]]
    write_json_atomic(
        layout.artifacts / "ensemble_results.json",
        {
            "members": names,
            "best_member": best,
            "threshold": combo["threshold"],
            "comparison": {k: v for k, v in comparison.items() if k != "verdict"},
            "verdict": comparison["verdict"],
            "artifact_check": check,
        },
    )
    diff = comparison["accuracy_diff_ci"]
    carried = run_recipe(params, layout).describe()
    record_summary(
        layout.run_dir,
        "06_ensemble",
        f"The run carries forward {carried}; this step asks whether combining {len(members)} models beats the "
        f"best of them (chosen on validation: {best}). {comparison['verdict'][0].upper()}"
        f"{comparison['verdict'][1:]}",
        decision_in_words(f"combining {len(members)} models", diff, comparison["mcnemar"]["p_value"]),
    )
    record_headline(
        layout.run_dir,
        "06_ensemble",
        {
            "verdict": comparison["verdict"],
            "models combined": len(members),
            "best single model (chosen on validation)": best,
            "test accuracy change vs the best single model": {
                "value": diff[0],
                "ci": [diff[1], diff[2]],
                "format": "delta",
            },
            "McNemar p-value": {"value": comparison["mcnemar"]["p_value"], "format": "number"},
        },
    )
    return check


def artifact_check(saved: dict) -> pd.Series:
    """Whether the saved artifact reproduces the fitted ensemble's test probabilities."""
    worst = saved["max_abs_difference"]
    answer = (
        "yes: every test probability is the same (to within 0.00001)"
        if worst <= 1e-5
        else f"NO: a test probability differs by up to {worst:.5f}; do not ship this file"
    )
    return pd.Series(
        {"the saved ensemble file gives the fitted ensemble's test predictions": answer}, name="deployable artifact"
    )
