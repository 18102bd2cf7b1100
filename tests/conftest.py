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
