"""The `nexara` command line on tiny real data: synth -> audit -> extract, and its errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nexara_lib.run import cli

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


def test_version_names_the_package_version_and_the_commit():
    import nexara_lib
    from nexara_lib.run.version import version_text

    proc = nexara("--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"nexara {nexara_lib.__version__} ("), proc.stdout
    if (ROOT / ".git").exists():
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert f"git {commit.strip()[:12]}" in proc.stdout
    assert "not a git checkout" in version_text(Path(nexara_lib.__file__).parent)  # an installed copy


def test_help_texts_name_what_each_command_does():
    proc = nexara("--help")
    assert proc.returncode == 0 and "01..06" not in proc.stdout
    assert "every NN_*.ipynb notebook" in proc.stdout and "--version" in proc.stdout


LIBRARY_LINE = "[tcp @ 0x55d0c0ffee00] Connection to tcp://127.0.0.1:9 failed: Connection refused"


def _library_output_script(log):
    """A command body that prints like OpenCV/FFmpeg (C-level fd 2), like us (sys.stderr, stdout) and warns."""
    return (
        "import os, sys, logging, warnings\n"
        "from nexara_lib.run.library_log import library_output\n"
        f"with library_output({str(log)!r}):\n"
        f"    os.write(2, {LIBRARY_LINE + chr(10)!r}.encode())\n"
        "    logging.getLogger('tensorflow').warning('a TensorFlow warning')\n"
        "    print('our progress line', file=sys.stderr)\n"
        "    print('our result line')\n"
        "print('error: our own error line', file=sys.stderr)\n"
    )


def test_library_lines_go_to_the_log_and_ours_stay_on_the_terminal(tmp_path):
    log = tmp_path / "out" / "detect.log"
    log.parent.mkdir()
    proc = subprocess.run([sys.executable, "-c", _library_output_script(log)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "our result line\n"
    assert proc.stderr == "our progress line\nerror: our own error line\n"
    text = log.read_text()
    assert LIBRARY_LINE in text and "a TensorFlow warning" in text and "our" not in text.split("\n", 1)[1]


def test_a_command_refused_before_its_output_folder_exists_leaves_no_log(tmp_path):
    log = tmp_path / "never-created" / "audit.log"
    proc = subprocess.run([sys.executable, "-c", _library_output_script(log)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and LIBRARY_LINE not in proc.stderr, proc.stderr
    assert not log.parent.exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder that `nexara detect --run` accepts: params.yaml and an export of a tiny flow model."""
    import yaml
    from test_detect_run import write_tiny_export

    run, T = tmp_path_factory.mktemp("tiny-run"), 4
    write_tiny_export(run, run / "artifacts" / "export", t=T, run_name=run.name)
    params = {
        "backbone": "flow",
        "backbone_weights": "none",
        "frames_per_clip": T,
        "model": "pooled_mlp",
        "synthetic_clips": 8,
        "export_variants": ["float32"],
    }
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    return run


UNREACHABLE = "http://127.0.0.1:9/camera.mp4"  # the discard port: nothing listens, the connection is refused
RAW_LINES = ("[tcp @", "WARN:", "global cap", "oneDNN", "absl::", "I0000", "XNNPACK")


def test_detect_on_an_unreachable_stream_logs_the_library_lines(tmp_path, tiny_run, capfd):
    """In process: FFmpeg's `[tcp @ 0x...] ... Connection refused` and OpenCV's `[ WARN:0@...] global cap.cpp`
    land in <out>/detect.log, not on file descriptor 2; our lines are printed."""
    out = tmp_path / "detect"
    code = cli.main(
        ["detect", UNREACHABLE, "--run", str(tiny_run), "--out", str(out), "--set", "detect_reconnect_attempts=0"]
    )
    captured = capfd.readouterr()
    assert code == 0, captured.err
    for raw in RAW_LINES:
        assert raw not in captured.out + captured.err, f"library line on the terminal: {raw!r}\n{captured.err}"
    assert f"{UNREACHABLE}: " in captured.out and "cannot open" in captured.out and "events:" in captured.out
    assert "Connection refused" in (out / "detect.log").read_text()


@pytest.mark.slow
def test_detect_command_on_an_unreachable_stream_shows_only_our_lines(tmp_path, tiny_run):
    """The real command in a fresh process: TensorFlow's start-up lines too go to <out>/detect.log."""
    out = tmp_path / "detect"
    proc = nexara("detect", UNREACHABLE, "--run", tiny_run, "--out", out, "--set", "detect_reconnect_attempts=0")
    assert proc.returncode == 0, proc.stderr
    terminal = proc.stdout + proc.stderr
    for raw in RAW_LINES:
        assert raw not in terminal, f"library line on the terminal: {raw!r}\n{terminal}"
    assert f"{UNREACHABLE}: " in proc.stdout and "cannot open" in proc.stdout and "events:" in proc.stdout
    log = (out / "detect.log").read_text()
    assert "Connection refused" in log and "oneDNN" in log, log
