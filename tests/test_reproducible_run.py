"""The same smoke run from another output root, on a copy of its dataset at another path: the same numbers.

Notebooks 01-06 (everything that draws randomness: the audit's splits, the augmented frame copies, training, the
recipe study, TTA, the ensemble) run again with ``data_dir`` pointing at a copy of the session smoke run's
synthetic dataset (another absolute path, the same folder name) and another ``output_root``. The test sections of
``metrics.json`` must be byte-identical, and so must the study units (timings aside), every trained model's
weights, the feature cache (names and bytes) and the TTA and ensemble test results. Any absolute path or output
root that leaks into a draw, a seed, an order or a cache key fails it. The fast checks of the same guarantee:
``test_location_independence``.
"""

import json
import shutil

import numpy as np
import pytest
from test_pipeline_e2e import PARAMS, assert_run_ok

from nexara_lib.run.runner import run_pipeline
from nexara_lib.training.model_files import load_sequence_model

NOTEBOOKS = ["01_data_audit", "02_feature_extraction", "03_hybrid_training", "04_per_class_diagnostics", "05_tta"]
NOTEBOOKS += ["06_ensemble"]


def _json(path):
    return json.loads(path.read_text())


def _test_section(path) -> str:
    return json.dumps(_json(path)["metrics"]["test"], sort_keys=True)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.xdist_group("smoke_run")
def test_same_numbers_from_another_output_root_and_dataset_location(smoke_run, tmp_path):
    data = smoke_run.parent / "_synthetic" / "n32-seed42"
    moved = tmp_path / "mounted" / "elsewhere" / data.name
    shutil.copytree(data, moved)
    overrides = {
        "output_root": str(tmp_path / "outputs"),
        "synthetic_clips": 0,
        "data_dir": str(moved),
        "groups_csv": str(moved / "groups.csv"),
    }
    other = run_pipeline([PARAMS / "base.yaml", PARAMS / "smoke.yaml"], overrides, notebooks=NOTEBOOKS)
    assert other.name == smoke_run.name and other.parent != smoke_run.parent
    assert_run_ok(other, NOTEBOOKS)
    assert_same_results(smoke_run, other)


def assert_same_results(first, second):
    """The results of two finished runs of one recipe are the same (timings and locations aside)."""
    a, b = first / "artifacts", second / "artifacts"
    assert not (set(_json(a / "audit.json")["data_dirs"]) & set(_json(b / "audit.json")["data_dirs"]))

    assert _test_section(a / "metrics.json") == _test_section(b / "metrics.json")
    assert _json(a / "metrics.json")["thresholds"] == _json(b / "metrics.json")["thresholds"]
    tta = [
        {k: v for k, v in _json(root / "tta_results.json").items() if k not in ("costs", "latency")} for root in (a, b)
    ]
    assert tta[0] == tta[1] and tta[0]["comparison"]  # what TTA changed on test; its costs are timings
    assert _json(a / "ensemble_results.json") == _json(b / "ensemble_results.json")

    units = sorted(p.relative_to(a).as_posix() for p in a.glob("models/**/unit.json"))
    assert units and units == sorted(p.relative_to(b).as_posix() for p in b.glob("models/**/unit.json"))
    for unit in units:
        ua, ub = ({k: v for k, v in _json(root / unit).items() if "seconds" not in k} for root in (a, b))  # timings
        assert ua == ub, unit

    models = sorted(p.relative_to(a).as_posix() for p in a.glob("models/**/model.keras"))
    assert "models/hybrid/model.keras" in models
    assert models == sorted(p.relative_to(b).as_posix() for p in b.glob("models/**/model.keras"))
    for model in models:
        wa, wb = (load_sequence_model(root / model).get_weights() for root in (a, b))
        assert len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True)), model

    streams = sorted(p.name for p in (a / "features").iterdir() if p.is_dir())
    assert any("-aug-" in s for s in streams) and streams == sorted(p.name for p in (b / "features").iterdir())
    for stream in streams:
        files = sorted(p.name for p in (a / "features" / stream).glob("*.npy"))
        assert files == sorted(p.name for p in (b / "features" / stream).glob("*.npy")), stream
        for name in files:
            assert (a / "features" / stream / name).read_bytes() == (b / "features" / stream / name).read_bytes()

    ra, rb = _json(first / "run.json")["reproduction"], _json(second / "run.json")["reproduction"]
    assert ra["data"] == rb["data"] and ra["location"] != rb["location"]  # the same clips, splits and groups
    assert ra["params"] == {**rb["params"], "synthetic_clips": 32}  # generated there, read from data_dir here
