"""The `nexara` command line on tiny real data: synth -> audit -> extract, and its errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def nexara(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "nexara_lib", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_synth_audit_extract_chain(tmp_path):
    data, audit, feats = tmp_path / "data", tmp_path / "audit", tmp_path / "feats"
    proc = nexara("synth", "--out", data, "--clips", 12, "--seed", 3)
    assert proc.returncode == 0, proc.stderr
    assert len(list(data.glob("*/*/*.avi"))) == 12 and "12 clips" in proc.stdout
    (data / "train" / "Fight" / "broken.avi").write_bytes(b"")  # a corrupt download
    proc = nexara("audit", data, "--out", audit, "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    manifest = pd.read_csv(audit / "manifest.csv", keep_default_na=False)
    unusable = pd.read_csv(audit / "unusable.csv")
    assert len(manifest) == 12 and set(manifest["split"]) == {"train", "val", "test"}
    assert unusable["path"].str.endswith("broken.avi").all() and "empty" in unusable["reason"].iloc[0]
    proc = nexara(
        "extract",
        "--manifest",
        audit / "manifest.csv",
        "--backbone",
        "flow",
        "--weights",
        "none",
        "--frames",
        4,
        "--out",
        feats,
    )
    assert proc.returncode == 0, proc.stderr
    files = list(feats.glob("flow-*/*.npy"))
    assert len(files) == 12 and np.load(files[0]).shape[0] == 4
    again = nexara(
        "extract",
        "--manifest",
        audit / "manifest.csv",
        "--backbone",
        "flow",
        "--weights",
        "none",
        "--frames",
        4,
        "--out",
        feats,
    )
    assert "0 computed, 12 already cached" in again.stdout
    files[0].write_bytes(files[0].read_bytes()[:-7])  # a cache file cut short (full disk, copy interrupted)
    repaired = nexara(
        "extract",
        "--manifest",
        audit / "manifest.csv",
        "--backbone",
        "flow",
        "--weights",
        "none",
        "--frames",
        4,
        "--out",
        feats,
    )
    assert repaired.returncode == 0, repaired.stderr
    assert "1 computed, 11 already cached" in repaired.stdout
    assert f"recomputed {files[0].name}: truncated" in repaired.stdout and "bad" in repaired.stdout


def test_cli_errors_are_one_clear_line(tmp_path):
    proc = nexara("audit", tmp_path / "missing", "--out", tmp_path / "a")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    proc = nexara("audit", tmp_path / "odd", "--out", tmp_path / "a")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "layout" in proc.stderr.lower()


def test_params_command_prints_reference():
    proc = nexara("params")
    assert proc.returncode == 0 and "`frames_per_clip`" in proc.stdout
