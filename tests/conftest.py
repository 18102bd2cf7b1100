"""Test-wide setup: where the offline pretrained encoder lies on these machines (../shared/models).

The library never assumes a path outside the repository: runs get it from the ``pretrained_dir``
parameter, tests from this default (an explicit NEXARA_PRETRAINED_DIR wins).
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("NEXARA_PRETRAINED_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "models"))


@pytest.fixture
def float32_policy():
    """Keras' global dtype policy is float32 during the test and after it (a test may switch it)."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def real_fight_clip():
    """A real CCTV fight clip of ../shared/data/surv-fight-dev (fi001.mp4) when it and the offline encoder
    (mobilenet_v1_tflite, ../shared/models) are both present; the test is skipped otherwise."""
    from nexara_lib.features.backbones import pretrained_path

    model = pretrained_path("mobilenet_v1_tflite")
    clip = Path(__file__).resolve().parents[2] / "shared" / "data" / "surv-fight-dev" / "fight" / "fi001.mp4"
    if not clip.is_file() or model is None or not model.is_file():
        pytest.skip("needs ../shared/data/surv-fight-dev and ../shared/models")
    return clip


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The real notebooks run once per test session through `run_pipeline` on params/smoke.yaml.

    Tests that only read the finished run (its artifacts, reports, a rerun that keeps everything) share it;
    a test that changes parameters and reruns notebooks works on its own copy (``copy_of_smoke_run``).
    """
    from nexara_lib.run.runner import run_pipeline

    params = Path(__file__).resolve().parents[1] / "params"
    root = tmp_path_factory.mktemp("smoke-run")
    return run_pipeline([params / "base.yaml", params / "smoke.yaml"], {"output_root": str(root)})


@pytest.fixture
def copy_of_smoke_run(smoke_run, tmp_path):
    """A private copy of the finished smoke run (same run name, under this test's ``tmp_path``)."""
    import shutil

    copy = tmp_path / smoke_run.name
    shutil.copytree(smoke_run, copy, symlinks=True)
    (copy / "run.lock").unlink(missing_ok=True)
    return copy
