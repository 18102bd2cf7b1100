"""Test-wide setup: where the offline pretrained encoder lies on these machines (../shared/models).

The library never assumes a path outside the repository: runs get it from the ``pretrained_dir``
parameter, tests from this default (an explicit NEXARA_PRETRAINED_DIR wins).
"""
import os
from pathlib import Path

os.environ.setdefault("NEXARA_PRETRAINED_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "models"))
