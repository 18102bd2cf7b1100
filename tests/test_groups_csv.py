"""groups_csv problems (issue 15, fault 9): checked with the other parameters (exit code 2, before any clip is
probed or a run folder made); CSV rows naming clips that do not exist are reported, with a count and examples."""

import pandas as pd
import pytest
from test_audit import rwf_tree

from nexara_lib.audit.discover import discover_clips
from nexara_lib.audit.groups import attach_groups
from nexara_lib.config import ParamError
from nexara_lib.run.cli import main
from nexara_lib.run.params import resolve_params


@pytest.mark.parametrize(
    "content, says",
    [
        ("clip,label\ntrain/Fight/Fight_0.avi,1\n", "lacks columns ['source_group']"),
        ("clip,label,source_group\na.avi,1,g1\na.avi,1,g2\n", "lists a clip more than once"),
    ],
)
def test_a_bad_groups_csv_is_a_parameter_error_naming_file_and_fix(tmp_path, content, says):
    csv = tmp_path / "groups.csv"
    csv.write_text(content)
    with pytest.raises(ParamError, match="groups_csv") as err:
        resolve_params([], {"data_dir": str(tmp_path), "groups_csv": str(csv)})
    assert says in str(err.value) and str(csv) in str(err.value)


def test_nexara_run_with_a_bad_groups_csv_exits_2_before_creating_anything(tmp_path, capsys):
    csv = tmp_path / "groups.csv"
    csv.write_text("clip,label\nx.avi,1\n")
    code = main(
        [
            "run",
            "-f",
            "params/base.yaml",
            "--set",
            f"data_dir={tmp_path}",
            "--set",
            f"groups_csv={csv}",
            "--set",
            f"output_root={tmp_path / 'out'}",
            "--set",
            "run_name=r",
        ]
    )
    assert code == 2 and "groups_csv" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_csv_rows_naming_clips_that_do_not_exist_are_reported(tmp_path):
    root = rwf_tree(tmp_path / "rwf")
    clips = discover_clips([root])
    rows = [
        {"clip": rel, "label": label, "source_group": f"g{i}"}
        for i, (rel, label) in enumerate(zip(clips["rel_path"], clips["label"], strict=True))
    ]
    rows += [{"clip": f"train/Fight/missing_{i}.avi", "label": 1, "source_group": "gx"} for i in range(7)]
    csv = tmp_path / "groups.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    with pytest.warns(UserWarning, match=r"7 of \d+ rows of groups CSV .* name clips that were not found"):
        grouped = attach_groups(clips, csv)
    report = grouped.attrs["groups_report"]
    assert report["matched"] == len(clips) and len(report["csv_rows_not_found"]) == 7
