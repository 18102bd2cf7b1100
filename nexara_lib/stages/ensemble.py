"""Stage 6 glue: train (or reload) each ensemble member on its feature stream and predict val/test."""
from __future__ import annotations

import json
from typing import Mapping

import keras
import numpy as np
import pandas as pd

from nexara_lib.stages.data import feature_dir, load_splits, member_backbone
from nexara_lib.evaluation.metrics import Predictions
from nexara_lib.layout import RunLayout
from nexara_lib.io import read_json
from nexara_lib.training.train import predict_proba, train_sequence_model


def member_name(index: int, member: Mapping, params: Mapping) -> str:
    backbone, _ = member_backbone(member, params)
    return f"m{index + 1}-{member['model']}-{backbone}-seed{member.get('seed', params['seed'])}"


def _member_config(member: Mapping, params: Mapping) -> dict:
    return {**dict(params), "model": member["model"], "seed": member.get("seed", params["seed"])}


def train_members(manifest: pd.DataFrame, params: Mapping, layout: RunLayout, verbose: int = 0) -> list[dict]:
    """Train every member of ``params['ensemble_members']`` (a finished member with the same
    configuration is reloaded, so a crashed run resumes), then predict validation and test.

    Returns:
        One dict per member: name, model, backbone, model_path, val / test ``Predictions``,
        training seconds. Predictions cover the clips every member could score, in one order.
    """
    members = []
    for i, member in enumerate(params["ensemble_members"]):
        backbone, weights = member_backbone(member, params)
        splits = load_splits(manifest, feature_dir(layout, params, backbone, weights))
        config = _member_config(member, params)
        out_dir = layout.ensemble_dir / member_name(i, member, params)
        fingerprint = _fingerprint(config, backbone, weights)
        previous = read_json(out_dir / "training_results.json", {})
        if previous.get("fingerprint") == fingerprint and (out_dir / "model.keras").exists():
            model = keras.models.load_model(out_dir / "model.keras")
            seconds = previous.get("timings", {}).get("total_seconds")
        else:
            result = train_sequence_model(splits["train"].x, splits["train"].y, splits["val"].x, splits["val"].y,
                                          config, out_dir, verbose=verbose)
            model, seconds = result["model"], result["timings"]["total_seconds"]
            _stamp(out_dir / "training_results.json", fingerprint)
        members.append({
            "name": member_name(i, member, params), "model": member["model"], "backbone": backbone,
            "model_path": str(out_dir / "model.keras"), "train_seconds": seconds,
            "val": (splits["val"].clip_ids, splits["val"].y, predict_proba(model, splits["val"].x)),
            "test": (splits["test"].clip_ids, splits["test"].y, predict_proba(model, splits["test"].x)),
        })
    return _align(members)


def _fingerprint(config: Mapping, backbone: str, weights: str) -> str:
    """What makes a trained member: its training recipe, seed and input features (not e.g. the
    ensemble method or TTA settings, so changing those reuses the trained members)."""
    from nexara_lib.config import SCHEMA
    keys = sorted(k for k, p in SCHEMA.items() if p.stage == "training") + ["seed", "frames_per_clip", "image_size"]
    return json.dumps({**{k: config[k] for k in keys}, "backbone": backbone, "weights": weights},
                      sort_keys=True, default=str)


def _stamp(path, fingerprint: str) -> None:
    from nexara_lib.io import write_json_atomic
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
    from nexara_lib.evaluation.metrics import binary_metrics
    rows = []
    for m in members:
        row = {"member": m["name"], "model": m["model"], "backbone": m["backbone"], "train_s": m["train_seconds"]}
        for split in ("val", "test"):
            metrics = binary_metrics(m[split].y_true, m[split].prob, threshold)
            row.update({f"{split}_accuracy": metrics["accuracy"], f"{split}_balanced_accuracy": metrics["balanced_accuracy"],
                        f"{split}_auc": metrics["roc_auc"]})
        rows.append(row)
    return pd.DataFrame(rows)


def combine_members(members: list[dict], method: str, seed: int = 0) -> dict:
    """Fit the combination on validation only and apply it to test.

    Args:
        members: output of ``train_members``.
        method: 'weighted' (soft voting, weights on the simplex minimising validation log-loss) or
            'stacking' (logistic regression on member logits; validation predictions out-of-fold).
    Returns:
        dict with val_prob, test_prob, the thresholds chosen on validation for the ensemble and for the
        best single member, the best member index, and the fitted weights / stacking model.
    """
    from nexara_lib.evaluation.ensemble import (choose_best_member, ensemble_predict, fit_ensemble_weights, fit_stacking,
                           stacking_predict)
    from nexara_lib.evaluation.metrics import choose_threshold
    val_preds = [m["val"] for m in members]
    test_probs = [m["test"].prob for m in members]
    out = {"method": method, "weights": None, "stacking": None}
    if method == "stacking":
        # up to 5 out-of-fold splits, fewer on a small validation set (each fold needs both classes)
        smallest = int(min(np.bincount(val_preds[0].y_true, minlength=2)))
        stacking = fit_stacking(val_preds, n_splits=min(5, max(smallest, 2)), seed=seed)
        out.update(stacking=stacking, val_prob=stacking.oof_prob, test_prob=stacking_predict(stacking.model, test_probs))
    elif method == "weighted":
        weights = fit_ensemble_weights(val_preds)
        out.update(weights=weights, val_prob=ensemble_predict([p.prob for p in val_preds], weights),
                   test_prob=ensemble_predict(test_probs, weights))
    else:
        raise ValueError(f"ensemble_method must be 'weighted' or 'stacking', got {method!r}")
    best = choose_best_member(val_preds)
    out.update(best=best, threshold=choose_threshold(val_preds[0].with_prob(out["val_prob"])),
               best_threshold=choose_threshold(val_preds[best]))
    return out


def diversity_figure(members: list[dict], thresholds: list[float]):
    """Pairwise disagreement and error correlation of the members' test predictions."""
    import seaborn as sns
    from matplotlib.figure import Figure

    from nexara_lib.evaluation.ensemble import error_correlation, pairwise_disagreement
    names = [m["name"] for m in members]
    preds = np.stack([m["test"].pred(t) for m, t in zip(members, thresholds)])
    y = members[0]["test"].y_true
    fig = Figure(figsize=(5 + 2.2 * len(names), 4.2), layout="constrained")
    for ax, matrix, title in zip(fig.subplots(1, 2), (pairwise_disagreement(preds), error_correlation(y, preds)),
                                 ("pairwise disagreement (test)", "error correlation (test)")):
        sns.heatmap(pd.DataFrame(matrix, names, names), annot=True, fmt=".2f", vmin=0, vmax=1, cmap="mako", ax=ax)
        ax.set_title(title)
    return fig


def combination_table(combo: dict, members: list[dict]) -> pd.Series:
    """The fitted combination: a weight per member, or the stacking model's out-of-fold validation metrics."""
    if combo["weights"] is not None:
        return pd.Series(combo["weights"], index=[m["name"] for m in members], name="weight (fit on validation)")
    return pd.Series(combo["stacking"].oof_metrics, name="stacking, out-of-fold on validation")


def ensemble_artifact(members: list[dict], combo: dict):
    """The deployable ``EnsembleArtifact`` of a fitted combination."""
    from nexara_lib.evaluation.ensemble import EnsembleArtifact
    paths = [m["model_path"] for m in members]
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
    from nexara_lib.evaluation.ensemble import EnsembleArtifact
    from nexara_lib.training.train import load_sequence_model
    artifact = EnsembleArtifact.load(artifact_path)
    loaded = {}

    def member_predict(path, features):
        if path not in loaded:
            loaded[path] = load_sequence_model(path)
        return predict_proba(loaded[path], features)

    return artifact.predict(features_by_member, member_predict)


def member_features(members: list[dict], manifest: pd.DataFrame, params: Mapping, layout: RunLayout,
                    split: str = "test") -> list[np.ndarray]:
    """Each member's input features for ``split``, in the clip order of ``members[i][split]``."""
    out = []
    for i, member in enumerate(params["ensemble_members"]):
        backbone, weights = member_backbone(member, params)
        fs = load_splits(manifest, feature_dir(layout, params, backbone, weights), (split,))[split]
        position = {cid: j for j, cid in enumerate(fs.clip_ids)}
        out.append(fs.x[[position[cid] for cid in members[i][split].clip_ids]])
    return out
