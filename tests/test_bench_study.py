"""Study benchmark pieces: the comparison of unit results between executors, and its options (a benchmark is
never a timed test)."""

import pytest

from benchmarks import bench_study


def unit(prob, seconds=1.0):
    return {"fingerprint": "f", "best_epoch": 3, "prob": prob, "y": [0, 1], "seconds": seconds, "cpu_seconds": 2.0}


def test_results_compare_equal_whatever_the_timings_and_name_what_differs():
    reference = {"a/seed1/fold1": unit([0.25, 0.75]), "a/seed1/fold2": unit([0.5, 0.5])}
    same = {"a/seed1/fold1": unit([0.25, 0.75], 9.0), "a/seed1/fold2": unit([0.5, 0.5], 7.0)}
    assert bench_study._compare(reference, same) == {
        "identical": True,
        "differing_units": [],
        "max_abs_prob_difference": 0.0,
    }
    drifted = {**same, "a/seed1/fold2": unit([0.5, 0.5 + 1e-6])}
    result = bench_study._compare(reference, drifted)
    assert not result["identical"] and result["differing_units"] == ["a/seed1/fold2"]
    assert result["max_abs_prob_difference"] == pytest.approx(1e-6)
    missing = bench_study._compare(reference, {"a/seed1/fold1": unit([0.25, 0.75])})
    assert not missing["identical"] and missing["differing_units"] == ["a/seed1/fold2"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--modes", "sequential,cluster"], "modes must be some of"),
        (["--workers", "0"], "workers must be an integer >= 1"),
        (["--folds", "-1"], "folds must be an integer >= 0"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys, tmp_path):
    assert bench_study.main([*argv, "--out", str(tmp_path / "r.json"), "--work", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
