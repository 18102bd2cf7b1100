"""Where a run keeps its files (SPEC.md "Run layout"): one place, so notebooks never build paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class RunLayout:
    run_dir: Path

    @property
    def artifacts(self) -> Path:
        return self.run_dir / "artifacts"

    @property
    def figures(self) -> Path:
        return self.artifacts / "figures"

    @property
    def features(self) -> Path:
        return self.artifacts / "features"

    @property
    def models(self) -> Path:
        return self.artifacts / "models"

    @property
    def manifest(self) -> Path:
        return self.artifacts / "manifest.csv"

    @property
    def unusable(self) -> Path:
        return self.artifacts / "unusable.csv"

    def model_dir(self, model: str) -> Path:
        """Where the run's trained sequence model of registry name ``model`` lives (notebook 03)."""
        return self.models / model

    @property
    def selection(self) -> Path:
        """What notebook 03 carries forward when it selects the recipe by cross-validation."""
        return self.artifacts / "selection.json"

    @property
    def headline(self) -> Path:
        return self.artifacts / "headline.json"

    @property
    def summaries(self) -> Path:
        """Each notebook's result in one sentence and its verdict in plain words (the reports' summary boxes)."""
        return self.artifacts / "summaries.json"

    @property
    def metrics(self) -> Path:
        return self.artifacts / "metrics.json"

    @property
    def tta_results(self) -> Path:
        return self.artifacts / "tta_results.json"

    @property
    def ensemble_dir(self) -> Path:
        return self.models / "ensemble"

    @property
    def export_dir(self) -> Path:
        """The carried-forward model exported for the edge (notebook 07, ``nexara export``)."""
        return self.artifacts / "export"

    @property
    def deploy_dir(self) -> Path:
        """Notebook 07's test videos and detector outputs."""
        return self.artifacts / "deploy"

    @property
    def reviews(self) -> Path:
        """Operators' verdicts on alerts (notebook 09; ``nexara feedback`` reads it)."""
        return self.run_dir / "reviews.jsonl"

    def require(self, path: Path, produced_by: str) -> Path:
        """Return ``path`` or fail naming the notebook that produces it."""
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run notebook {produced_by} for run folder {self.run_dir} first"
            )
        return path


def open_run(run_dir: str | Path) -> RunLayout:
    """The layout of ``run_dir``, creating its folders."""
    layout = RunLayout(Path(run_dir).resolve())
    for folder in (
        layout.figures,
        layout.features,
        layout.models,
        layout.run_dir / "notebooks",
        layout.run_dir / "reports",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    return layout


def save_figure(fig, layout: RunLayout, name: str) -> Path:
    """Save a matplotlib figure as ``artifacts/figures/<name>.png`` (and keep it displayable)."""
    path = layout.figures / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
