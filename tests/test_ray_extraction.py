"""The Ray executor on real video files: same features and failures as the local executor, failures per clip.

One local Ray instance serves the whole module (starting one takes seconds). It declares one GPU:
Ray schedules by declared resources, so the GPU-actor path runs here too (on the CPU, with the same
code), while ``use_gpus=False`` exercises the CPU-task path.
"""

import logging
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from nexara_lib.features.backbones import create_backbone  # noqa: E402
from nexara_lib.features.cache import load_features  # noqa: E402
from nexara_lib.features.clip_jobs import ClipJob  # noqa: E402
from nexara_lib.features.extract import _jobs, extract_features, local_results  # noqa: E402
from nexara_lib.features.ray_executor import FAILURES_IN_A_ROW_LIMIT, plan_chunks, ray_results  # noqa: E402
from nexara_lib.features.ray_worker import encode_chunk  # noqa: E402
from nexara_lib.features.stream import FeatureStream  # noqa: E402

pytestmark = pytest.mark.slow  # each test starts a local Ray cluster (~10 s)

CLIP_SIZES = [(32, 32), (40, 32), (48, 40), (56, 40), (64, 48), (64, 48)]  # (width, height)
CLIP_FRAMES = [15, 18, 21, 24, 27, 30]
T = 4


def write_clip(path, n_frames, size, seed):
    """A small MJPG clip with a moving bright square on noise (every frame differs)."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, size)
    for i in range(n_frames):
        frame = rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
        x = (3 * i + 5 * seed) % (size[0] - 12)
        cv2.rectangle(frame, (x, 6), (x + 10, 22), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    rows = [
        {
            "clip_id": f"c{i}",
            "path": str(write_clip(folder / f"c{i}.avi", n, size, seed=i)),
            "label": i % 2,
            "frames": n,
        }
        for i, (size, n) in enumerate(zip(CLIP_SIZES, CLIP_FRAMES, strict=True))
    ]
    corrupt = folder / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    rows.append({"clip_id": "corrupt", "path": str(corrupt), "label": 0, "frames": 0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """Seeded ResNet50V2 weights at 32x32: the same network in every process (unlike weights 'none')."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "resnet50v2-32.weights.h5"
    model.save_weights(path)
    return str(path)


def flow_jobs(manifest):
    return _jobs(manifest, FeatureStream("flow", "none", T, 32))


def collect(results):
    """{clip_id: (features or None, error or None)} from an executor's items, checking each job comes once."""
    out = {}
    for job, feats, error, _record in results:
        assert job.clip_id not in out
        assert (feats is None) != (error is None)
        out[job.clip_id] = (feats, error)
    return out


def test_plan_chunks_covers_every_job_once_and_spreads_small_lists():
    jobs = [ClipJob(f"n{i}", f"c{i}", f"/x/{i}.avi", 10, 4, 32, False) for i in range(50)]
    chunks = plan_chunks(jobs, batch_frames=16, in_flight=2)
    assert [index for chunk in chunks for index, _ in chunk] == list(range(50))
    assert max(len(chunk) for chunk in chunks) == 16  # 4 clips per batch x CHUNK_BATCHES
    assert len(plan_chunks(jobs[:6], batch_frames=16, in_flight=3)) == 3  # every slot gets work
    assert [len(c) for c in plan_chunks(jobs[:5], 16, 2, chunk_clips=2)] == [2, 2, 1]


@pytest.mark.parametrize("backbone", ["flow", "resnet50v2"])
def test_ray_executor_matches_local_and_resumes(ray_cluster, manifest, tmp_path, request, backbone):
    weights = "none" if backbone == "flow" else request.getfixturevalue("resnet_weights")
    stream = FeatureStream(backbone, weights, T, 32)
    on_ray = extract_features(manifest, stream, tmp_path / "ray", executor="ray", workers=2, progress=False)
    local = extract_features(manifest, stream, tmp_path / "local", executor="local", workers=0, progress=False)

    assert on_ray["computed"] == local["computed"] == 6
    assert on_ray["failed"] == local["failed"]
    assert [f["clip_id"] for f in on_ray["failed"]] == ["corrupt"] and on_ray["failed"][0]["reason"]
    assert on_ray["model_s"] > 0 and on_ray["wait_s"] > 0 and on_ray["decode_s"] > 0
    x_ray, _, ids_ray = load_features(manifest, on_ray["cache_dir"])
    x_local, _, ids_local = load_features(manifest, local["cache_dir"])
    assert ids_ray == ids_local == [f"c{i}" for i in range(6)]
    assert np.abs(x_local).max() > 0  # real numbers, not an all-zero feature set
    if backbone == "flow":
        np.testing.assert_array_equal(x_ray, x_local)
    else:  # float16 files; batch composition may change float32 rounding in the last bits only
        np.testing.assert_allclose(x_ray, x_local, rtol=2e-3, atol=1e-5)

    again = extract_features(manifest, stream, tmp_path / "ray", executor="ray", workers=2, progress=False)
    assert again["computed"] == 0 and again["cached_before"] == 6 and len(again["failed"]) == 1


def test_cpu_tasks_match_local(ray_cluster, manifest):
    jobs = flow_jobs(manifest)
    timer = {}
    on_ray = collect(
        ray_results(
            jobs,
            backbone="flow",
            weights="none",
            size=32,
            batch_frames=8,
            workers=2,
            mixed_precision="auto",
            address=None,
            timer=timer,
            use_gpus=False,
        )
    )
    local = collect(local_results(jobs, create_backbone("flow", "none", 32), 8, 0, {}))
    assert on_ray.keys() == local.keys()
    for clip_id, (feats, error) in local.items():
        assert on_ray[clip_id][1] == error
        if feats is not None:
            assert on_ray[clip_id][0].dtype == np.float32
            np.testing.assert_array_equal(on_ray[clip_id][0], feats)
    assert timer["model_s"] > 0 and timer["wait_s"] > 0


def failing_runner(raise_on: str, crash_on: str):
    """A chunk runner that raises on one clip ('*': all) and kills its worker on another (else ``encode_chunk``).

    A closure, so Ray ships it by value (this test module is not importable on the workers).
    """

    def run(encode, chunk, batch_frames):
        clip_ids = {job.clip_id for _, job in chunk}
        if raise_on in clip_ids or raise_on == "*":
            raise RuntimeError(f"cannot encode {raise_on}")
        if crash_on in clip_ids:
            os._exit(3)  # what a segfault inside a decoder or backbone looks like to Ray
        return encode_chunk(encode, chunk, batch_frames)

    return run


@pytest.mark.parametrize("use_gpus", [False, True], ids=["cpu-tasks", "gpu-actor"])
def test_a_failing_task_costs_only_its_own_clips(ray_cluster, manifest, use_gpus):
    jobs = flow_jobs(manifest)
    reference = collect(local_results(jobs, create_backbone("flow", "none", 32), 8, 0, {}))
    got = collect(
        ray_results(
            jobs,
            backbone="flow",
            weights="none",
            size=32,
            batch_frames=8,
            workers=2,
            mixed_precision="auto",
            address=None,
            timer={},
            chunk_clips=3,
            use_gpus=use_gpus,
            chunk_runner=failing_runner("c1", "c4"),
        )
    )
    assert set(got) == set(reference)
    assert got["c1"][1] == "Ray task failed: RuntimeError: cannot encode c1"
    assert got["c4"][1].startswith("Ray task failed: the worker process died on this clip") and got["c4"][0] is None
    for clip_id in ("c0", "c2", "c3", "c5"):  # chunk-mates of the failing clips were re-run alone
        np.testing.assert_array_equal(got[clip_id][0], reference[clip_id][0])
    assert got["corrupt"][1] == reference["corrupt"][1]


def test_tasks_failing_everywhere_stop_the_run(ray_cluster, manifest):
    jobs = flow_jobs(manifest) * 2  # more single-clip tasks than the limit
    errors = []
    with pytest.raises(RuntimeError, match="Ray tasks failed in a row.*worker logs"):
        for _, _, error, _ in ray_results(
            jobs,
            backbone="flow",
            weights="none",
            size=32,
            batch_frames=8,
            workers=2,
            mixed_precision="auto",
            address=None,
            timer={},
            chunk_clips=1,
            use_gpus=False,
            chunk_runner=failing_runner("*", ""),
        ):
            errors.append(error)
    assert len(errors) == FAILURES_IN_A_ROW_LIMIT - 1
    assert all(e.startswith("Ray task failed: RuntimeError: cannot encode") for e in errors)


def test_a_backbone_that_cannot_be_built_stops_the_run(ray_cluster, manifest, tmp_path):
    jobs = flow_jobs(manifest)
    with pytest.raises(RuntimeError, match="could not build backbone 'flow'.*every node"):
        list(
            ray_results(
                jobs,
                backbone="flow",
                weights=str(tmp_path / "missing.h5"),
                size=32,
                batch_frames=8,
                workers=2,
                mixed_precision="auto",
                address=None,
                timer={},
                use_gpus=False,
            )
        )


def test_missing_ray_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is not installed
    job = ClipJob("n", "c", "/x.avi", 10, T, 32, True)
    with pytest.raises(RuntimeError, match="needs the ray package.*pip install"):
        list(
            ray_results(
                [job],
                backbone="flow",
                weights="none",
                size=32,
                batch_frames=8,
                workers=1,
                mixed_precision="auto",
                address=None,
                timer={},
            )
        )


def test_unreachable_address_is_a_clear_error_fast():
    # In a fresh process: this module's Ray instance would otherwise be used as is.
    code = textwrap.dedent("""
        from nexara_lib.features.clip_jobs import ClipJob
        from nexara_lib.features.ray_executor import ray_results
        job = ClipJob("n", "c", "/x.avi", 10, 4, 32, True)
        try:
            list(ray_results([job], backbone="flow", weights="none", size=32, batch_frames=8, workers=1,
                             mixed_precision="auto", address="127.0.0.1:1", timer={}))
        except RuntimeError as err:
            print("ERROR:", err)
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "ERROR: cannot reach the Ray cluster at '127.0.0.1:1'" in done.stdout, done.stdout + done.stderr
    assert "ray start --head" in done.stdout
