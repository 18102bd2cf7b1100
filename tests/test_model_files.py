"""Model files (issue 15, fault 3): a truncated or garbled .keras is reported as corrupt (path, size, what to do),
a missing one as missing; a good one loads in safe mode."""

import numpy as np
import pytest

from nexara_lib.training.model_files import CorruptModelFile, load_sequence_model, save_model_atomic
from nexara_lib.training.models import create_sequence_model, model_defaults


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.keras"
    save_model_atomic(create_sequence_model("pooled_mlp", (4, 6), **model_defaults("pooled_mlp")), path)
    return path


def test_a_saved_model_loads_back(saved):
    model = load_sequence_model(saved)
    assert model.predict(np.zeros((2, 4, 6), np.float32), verbose=0).shape == (2, 2)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_a_damaged_model_file_is_reported_as_corrupt_with_path_and_size(tmp_path, saved, damage):
    data = saved.read_bytes()
    bad = tmp_path / "model.keras"
    middle = len(data) // 2  # garbled: the weights' bytes overwritten (the archive's CRC no longer matches)
    bad.write_bytes(data[:middle] if damage == "truncate" else data[:middle] + b"\0" * 512 + data[middle + 512 :])
    with pytest.raises(CorruptModelFile, match="corrupt or truncated") as err:
        load_sequence_model(bad)
    assert str(bad) in str(err.value) and f"{bad.stat().st_size:,} bytes" in str(err.value)
    assert "rerun the notebook that trains it" in str(err.value)


def test_a_missing_model_file_says_missing_not_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sequence_model(tmp_path / "model.keras")
