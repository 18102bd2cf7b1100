"""Notebook 03 glue: train the run's model on its features, and compare recipes on train + val."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from IPython.display import Markdown

from nexara_lib.config import stage_keys
from nexara_lib.evaluation.stats import ci_excludes_zero
from nexara_lib.features.stream_set import StreamSet
from nexara_lib.io import read_json, write_json_atomic
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import FeatureSplit, load_manifest, load_splits, with_augmented_copies
from nexara_lib.stages.formats import stream_set_words
from nexara_lib.stages.headline import record_headline, record_summary
from nexara_lib.training.figures import plot_training_history
from nexara_lib.training.models import model_fit_kind
from nexara_lib.training.selection import Selection, select_recipe, selection_candidates
from nexara_lib.training.study import RecipeStudy, development_pool, study_for_run
from nexara_lib.training.study_results import BASELINE
from nexara_lib.training.study_units import StudyExecution
from nexara_lib.training.train import train_sequence_model


def training_splits(params: Mapping, layout: RunLayout) -> dict[str, FeatureSplit]:
    """Train / val / test features of the run's stream; the training split gets its augmented copies."""
    manifest = load_manifest(layout)
    splits = load_splits(manifest, StreamSet.from_params(params), layout)
    splits["train"] = with_augmented_copies(splits["train"], manifest, layout, params)
    return splits


def splits_table(splits: Mapping[str, FeatureSplit]) -> pd.DataFrame:
    """Clips per split and class, and the feature shape."""
    return pd.DataFrame(
        {
            name: {
                "clips": len(s),
                CLASS_NAMES[1]: int(s.y.sum()),
                CLASS_NAMES[0]: int((s.y == 0).sum()),
                "T x D": f"{s.x.shape[1]} x {s.x.shape[2]}",
            }
            for name, s in splits.items()
        }
    )


def train_run_model(splits: Mapping[str, FeatureSplit], params: Mapping, layout: RunLayout) -> dict:
    """Train (or resume) the run's model with early stopping on validation; prints one summary line."""
    result = train_sequence_model(
        splits["train"].x,
        splits["train"].y,
        splits["val"].x,
        splits["val"].y,
        config=params,
        out_dir=layout.model_dir(params["model"]),
        verbose=0,
    )
    print(
        f"stopped after {result['epochs_run']} epochs ({result['stop_reason']}); best epoch {result['best_epoch']} "
        f"({result['monitor']} = {result['best_metrics'][result['monitor']]:.3f}); "
        f"{result['timings']['seconds_per_epoch']:.2f} s per epoch on {result['distribution']['replicas']} device(s)"
    )
    return result


def training_curves(result: dict, params: Mapping, layout: RunLayout) -> tuple:
    """The training curves (saved as ``training_curves``) and the best epoch's validation metrics."""
    curves = plot_training_history(result["history"], params["gap_warning"], params["gap_critical"])
    save_figure(curves, layout, "training_curves")
    best = pd.Series(result["best_metrics"], name=f"best epoch {result['best_epoch']} of {result['epochs_run']}")
    return curves, best


def recipe_study(params: Mapping, layout: RunLayout) -> RecipeStudy | Selection | None:
    """The run's recipe study on train + val (never test): with ``select_recipe: cv`` the selection over
    every candidate (stream sets, baseline models, ablation files), else the plain comparison of the
    run's recipe with the ablation files (or None when nothing is asked for). Its units train where
    ``study_executor`` and ``study_workers`` say (the notebook's process, worker processes, or Ray)."""
    manifest = load_manifest(layout)
    if params["select_recipe"] == "cv":
        candidates = selection_candidates(params)
        pools = {
            name: development_pool(manifest, StreamSet.parse(name, params), layout.features)
            for name in dict.fromkeys(c.streams for c in candidates)
        }
        return select_recipe(
            pools,
            candidates,
            params["ablation_seeds"],
            params["cv_folds"],
            layout.models / "selection",
            fold_seed=params["seed"],
            n_bootstrap=params["bootstrap_samples"],
            execution=StudyExecution.from_params(params),
        )
    return study_for_run(
        manifest, StreamSet.from_params(params), layout.features, params, layout.model_dir(params["model"]) / "study"
    )


CARRIED = "what notebooks 04-06 evaluate"


def carry_forward(study: RecipeStudy | Selection | None, params: Mapping, layout: RunLayout) -> pd.Series:
    """Fit what notebooks 04-06 evaluate. With a selection: the winner, refit on train + val for the
    number of epochs its out-of-fold predictions chose (no held-out data left to stop on), beside the
    same recipe trained on train with early stopping on val, for comparison in 04. Writes
    ``artifacts/selection.json``. Without one: the run's recipe trained above is carried forward."""
    if not isinstance(study, Selection):
        layout.selection.unlink(missing_ok=True)  # a rerun without selection must not evaluate an old winner
        return pd.Series(
            {
                "carried forward": f"{params['model']} (the run's recipe)",
                "trained on": "train",
                "stopped by": "early stopping on val",
                "threshold and temperature": "chosen on val in 04",
            },
            name=CARRIED,
        )
    winner, choices = study.winner, study.choices
    manifest = load_manifest(layout)
    splits = load_splits(manifest, StreamSet.parse(winner.streams, winner.config), layout, ("train", "val"))
    x_all = np.concatenate([splits["train"].x, splits["val"].x])
    y_all = np.concatenate([splits["train"].y, splits["val"].y])
    epochs = max(1, choices["epochs"])
    if model_fit_kind(winner.config["model"]) == "closed_form":
        # its "epochs" index the strength grid: refit with the median out-of-fold choice of C
        grid = list(winner.config["pooled_c_grid"])
        strength = grid[min(epochs, len(grid)) - 1]
        refit = {**winner.config, "pooled_c_grid": [strength]}
        how = f"C = {strength:g} (median out-of-fold choice)"
    else:
        refit = {
            **winner.config,
            "epochs": epochs,
            "early_stopping_patience": epochs,
            "warmup_epochs": min(winner.config["warmup_epochs"], epochs),
        }
        how = f"{epochs} epochs (median best epoch out of fold)"
    out = layout.models / "selected"
    train_sequence_model(x_all, y_all, x_all, y_all, refit, out, verbose=0)
    train_sequence_model(
        splits["train"].x,
        splits["train"].y,
        splits["val"].x,
        splits["val"].y,
        winner.config,
        out / "train_only",
        verbose=0,
    )
    overrides = {
        k: winner.config[k]
        for k in (*stage_keys("training"), "streams")
        if k in winner.config and winner.config[k] != params.get(k)
    }
    record = {
        **study.to_json(),
        "oof": study.oof.reset_index().to_dict("records"),
        "carried": {
            "overrides": overrides,
            "model_path": str((out / "model.keras").relative_to(layout.run_dir)),
            "train_only_model_path": str((out / "train_only" / "model.keras").relative_to(layout.run_dir)),
            "refit": {"on": "train + val", "length or strength": how, "clips": int(len(y_all))},
        },
    }
    write_json_atomic(layout.selection, record)
    return pd.Series(
        {
            "carried forward": winner.name,
            "trained on": f"train + val ({len(y_all)} clips)",
            "fit length": how,
            "operating threshold": f"{choices['threshold']:.2f} (out of fold)",
            "temperature": f"{choices['temperature']:.2f} (out of fold)",
        },
        name=CARRIED,
    )


def recipe_study_views(study: RecipeStudy | Selection | None, layout: RunLayout, n_bootstrap: int = 1000) -> list:
    """What the notebook shows of the study, in order: what was compared, configurations, folds,
    summary, per-fold accuracy, paired differences and the plot (saved as ``recipe_study``); for a
    selection, first the ranking of every candidate and the verdict."""
    if study is None:
        return [
            Markdown(
                "No cross-validation or ablation configured: set `cv_folds: 5` and/or "
                "`ablation_configs: [ablation_overregularized.yaml]` to compare recipes."
            )
        ]
    if isinstance(study, Selection):
        ranking = study.ranking.drop(columns=["recipe", "streams"]).set_index("candidate")
        comparisons = study.comparisons.assign(
            **{
                "95% CI": [
                    f"[{lo:+.3f}, {hi:+.3f}]"
                    for lo, hi in zip(study.comparisons["low"], study.comparisons["high"], strict=True)
                ]
            }
        )
        views = [
            Markdown(
                f"**{len(study.ranking)} candidates × {len(study.seeds)} seeds {study.seeds}**, grouped "
                f"{study.cv_folds}-fold cross-validation on train + val (the test split is not used).\n\n"
                f"**{study.verdict()}**"
            ),
            ranking.round(3),
            comparisons.drop(columns=["low", "high"]).round(3),
        ]
        for streams, one in study.studies.items():
            views += [Markdown(f"Stream set **{streams}**: per-fold accuracy"), one.per_fold("accuracy")]
        fig = study.studies[study.winner.streams].figure()
        save_figure(fig, layout, "recipe_study")
        return views + [fig]
    where = (
        f"grouped, stratified {study.cv_folds}-fold cross-validation on train + val (inner validation "
        "for early stopping carved from each fold's training clips)"
        if study.cv_folds >= 2
        else "the fixed split: fit on train (early stopping on a grouped carve of train), scored on val"
    )
    views = [
        Markdown(
            f"**{len(study.names)} configurations × {len(study.seeds)} seeds {study.seeds}** on {where}. "
            "The test split is not used."
        )
    ]
    if not study.configs.empty:
        views.append(study.configs)
    views += [study.folds, study.summary(), study.per_fold("accuracy")]
    comparison = study.comparison(n_bootstrap=n_bootstrap)
    if not comparison.empty:
        views.append(comparison)
    fig = study.figure()
    save_figure(fig, layout, "recipe_study")
    return views + [fig]


def publish_headline(result: dict, study: RecipeStudy | Selection | None, params: Mapping, layout: RunLayout):
    """Headline figures and the summary in plain words, the model carried forward first: with a selection the
    winner (its cross-validated accuracy, its refit), then the run's own recipe trained here."""
    best = result["best_metrics"]
    refit = None
    if isinstance(study, Selection):  # carry_forward wrote how the winner was refit
        refit = ((read_json(layout.selection) or {}).get("carried") or {}).get("refit")
    record_summary(layout.run_dir, "03_hybrid_training", *describe_training(result, study, params, refit=refit))
    own = {
        "validation balanced accuracy": best["val_balanced_accuracy"],
        "validation gap between the classes": best["val_class_gap"],
        "best epoch": {"value": result["best_epoch"], "format": "number"},
        "time per epoch": {"value": result["timings"]["seconds_per_epoch"], "format": "seconds"},
    }
    if isinstance(study, Selection):
        row = study.ranking.iloc[0]
        figures = {
            "model carried forward (chosen by cross-validation)": _candidate_words(study.winner, params),
            "its cross-validated accuracy": {"value": row["accuracy"], "format": "percent"},
            "its refit": _refit_words(refit),
            "the run's own recipe": _own_recipe_words(params),
            **{f"the run's own recipe: {name}": value for name, value in own.items()},
        }
    else:
        figures = {"model carried forward": _own_recipe_words(params), **own, **_study_headline(study)}
    return record_headline(layout.run_dir, "03_hybrid_training", figures)


def _study_headline(study: RecipeStudy | None) -> dict:
    return study.headline() if study is not None else {}


def _own_recipe_words(params: Mapping) -> str:
    return f"{params['model']} on {stream_set_words(params['streams'])}"


def _candidate_words(candidate, params: Mapping) -> str:
    """A selection candidate in words: its model on its streams (an ablation file named after its model)."""
    model = candidate.config.get("model", params["model"])
    named = model if candidate.recipe in (BASELINE, model) else f"{model} ({candidate.recipe})"
    return f"{named} on {stream_set_words(candidate.streams)}"


def selection_verdict(study: Selection, params: Mapping) -> str:
    """The selection's outcome in plain words: the winner, then each comparison with its 95% CI and whether the
    data can tell the two apart."""
    text = f"{_candidate_words(study.winner, params)} goes forward."
    for _, comp in study.comparisons.iterrows():
        other = study.ranking[study.ranking["candidate"] == comp["against"]].iloc[0]
        recipe = params["model"] if other["recipe"] == BASELINE else other["recipe"]
        named = f"{recipe} on {stream_set_words(other['streams'])}"
        low, high = comp["low"], comp["high"]
        text += (
            f" Against {named} ({comp['role']}) it scored {100 * comp['difference']:+.1f} points of cross-validated "
            f"accuracy (95% CI {100 * low:+.1f} to {100 * high:+.1f}): "
            + (
                "a significant difference."
                if ci_excludes_zero(low, high)
                else "not significant, the data cannot tell them apart."
            )
        )
    return text


def _refit_words(refit: Mapping | None) -> str:
    if not refit:
        return "on train + val"
    return f"on {refit['on']} ({refit['clips']} clips), {refit['length or strength']}"


def describe_training(
    result: dict,
    study: RecipeStudy | Selection | None,
    params: Mapping,
    n_bootstrap: int = 500,
    refit: Mapping | None = None,
) -> tuple[str, str]:
    """(result, verdict) of notebook 03 in plain words, the model carried forward first.

    With a selection: the winner, its cross-validated accuracy and its refit (``refit``: the ``carried.refit`` of
    ``selection.json``), then the run's own recipe's validation result. Without: the run's recipe (which goes
    forward) and what the recipe comparison says (differences with their 95% CIs, significant or not).
    """
    best = result["best_metrics"]
    own = (
        f"{100 * best['val_balanced_accuracy']:.1f}% balanced accuracy on the validation clips "
        f"(best of {result['epochs_run']} epochs)"
    )
    if isinstance(study, Selection):
        row = study.ranking.iloc[0]
        winner = study.winner
        own_recipe = winner.recipe == BASELINE and winner.streams == "+".join(params["streams"])
        text = (
            f"The model carried forward is {_candidate_words(winner, params)}, chosen by grouped "
            f"{study.cv_folds}-fold cross-validation on the training and validation clips (never test): "
            f"{100 * row['accuracy']:.1f}% cross-validated accuracy (± {100 * row['accuracy std']:.1f} points over "
            f"{len(study.seeds)} seeds), then refit {_refit_words(refit)}. "
            + (
                f"It is the run's own recipe; trained on the training clips alone it reached {own}."
                if own_recipe
                else f"The run's own recipe, {_own_recipe_words(params)}, reached {own}."
            )
            + " The honest test result is in step 4."
        )
        return text, selection_verdict(study, params)
    text = (
        f"The model carried forward is the run's own recipe, {_own_recipe_words(params)}: it reached {own}. "
        "Validation clips tune the model; the honest test result is in step 4."
    )
    if study is None or len(study.names) < 2:
        return text, "No other recipe was compared; the one trained here goes forward to the evaluation."
    where = "cross-validated" if study.cv_folds >= 2 else "validation"
    sentences: list[str] = []
    better: list[str] = []
    worse: list[str] = []
    for name, metrics in study.paired_differences(("accuracy",), n_bootstrap, params["seed"]).items():
        diff, low, high = metrics["accuracy"]
        if not all(np.isfinite([diff, low, high])):
            continue
        sentences.append(
            f"'{name}' scored {100 * diff:+.1f} pp of {where} accuracy against ours "
            f"(95% CI {100 * low:+.1f} to {100 * high:+.1f} pp)"
        )
        (better if low > 0 else worse if high < 0 else []).append(name)
    comparison = "; ".join(sentences) + "." if sentences else ""
    if better:
        verdict = (
            f"{', '.join(better)} did significantly better than our recipe; ours still goes forward because "
            "no selection was asked for (select_recipe: cv would carry the winner)."
        )
    elif worse and len(worse) == len(sentences):
        verdict = "Our recipe is significantly better than every alternative tried, and it goes forward."
    else:
        verdict = "No significant difference between the recipes on these clips; ours goes forward."
    return f"{text} Recipe comparison: {comparison}".strip(), verdict
