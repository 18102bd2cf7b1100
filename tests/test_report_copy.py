"""The stakeholder copy rules and the quiet full copy (nexara_lib.run.report_copy).

Notebooks are built with nbformat, outputs in place, and rendered with
``render_reports``: no kernel, a few seconds.
"""

import copy
import logging

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nexara_lib.run.report_copy import REPO_ROOT, copy_problems, quiet_full_copy, stakeholder_outputs
from nexara_lib.run.reports import render_reports

WIDGET = "application/vnd.jupyter.widget-view+json"
NODEDEF = (
    "E0000 00:00:17961401{}.010634   31214 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset> NodeDef: "
    "{{{{node ParallelMapDatasetV2/_1{}}}}}\n"
)


def _widget(text: str, model: str = "m") -> dict:
    return new_output(
        "display_data", data={WIDGET: {"model_id": model, "version_major": 2, "version_minor": 0}, "text/plain": text}
    )


def _stdout(run_dir) -> str:
    return "".join(
        [
            "synthetic clips:   0%|          | 0/320 [00:00<?, ?it/s]\rsynthetic clips:  50%|#####     | 160/320\n",
            "probing clips:   0%|          | 0/320 [00:00<?, ?clip/s]\r"
            "probing clips: 100%|##########| 320/320 [00:02<00:00, 150.0clip/s]\n",
            "INFO nexara.audit: probing 320 clips\n",
            "WARNING:tensorflow:5 out of the last 5 calls to <function f at 0x7f> triggered tf.function retracing.\n",
            "I1201 15:47:28.123456  140 absl_file.py:12] absl line\n",
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
            "/work/x/lib/foo.py:12: UserWarning: careful now\n",
            "  warnings.warn('careful now')\n",
            "Traceback (most recent call last):\n",
            '  File "x.py", line 1, in <module>\n',
            "    f()\n",
            "KeyError: 'k'\n",
            "320 usable clips, 0 unusable\n",
            f"run folder: {run_dir}\n",
            f"manifest: {run_dir}/artifacts/manifest.csv\n",
            "data: /work/shared/data/x/clip.mp4\n",
            f"code: {REPO_ROOT}/params/base.yaml\n",
            "docs: https://example.org/a/b/c and file:///tmp/a/b/c\n",
            "split train/val/test\n",
        ]
    )


@pytest.fixture()
def notebook(tmp_path):
    run_dir = tmp_path / "demo"
    cells = [
        new_markdown_cell(f"# Audit\nClips are listed in `{run_dir}/artifacts/manifest.csv`."),
        new_code_cell(
            "audit()",
            execution_count=1,
            outputs=[
                new_output("stream", name="stdout", text=_stdout(run_dir)),
                new_output("stream", name="stderr", text="I0000 tensorflow start-up chatter\n"),
            ],
        ),
        new_code_cell(
            "log_only()",
            execution_count=2,
            outputs=[
                new_output("stream", name="stdout", text="INFO nexara.x: only a log line\nprobe:  10%|#  | 1/10\n")
            ],
        ),
        new_code_cell(
            "bars()",
            execution_count=3,
            outputs=[
                _widget("probing frozen:   0%|          | 0/320 [00:00<?, ?clip/s]", "a"),
                _widget("features flow: 100%|##########| 320/320 [00:21<00:00, 15.0it/s]", "b"),
                _widget("IntSlider(value=3)", "c"),
            ],
        ),
        new_code_cell(
            "series()",
            execution_count=4,
            outputs=[
                new_output(
                    "execute_result",
                    execution_count=4,
                    data={"text/plain": "0    first note\n1    second note\nName: notes, dtype: object"},
                ),
                new_output("display_data", data={"text/plain": "train    210\nval       46\ndtype: int64"}),
                new_output(
                    "display_data",
                    data={
                        "text/html": f"<table><tr><td>&#x27;/tmp/elsewhere/x/y.csv&#x27;</td>"
                        f"<td>&quot;{run_dir}/features/a.npz&quot;</td></tr></table>"
                        '<img alt="dot" src="data:image/png;base64,AB+/xy/zz/Q=">',
                        "text/plain": "<table>",
                    },
                ),
            ],
        ),
        new_code_cell(
            "train()",
            execution_count=5,
            outputs=[
                new_output("stream", name="stderr", text="".join(NODEDEF.format(10 + i, i) for i in range(5))),
                new_output("stream", name="stdout", text="epoch 1 done\n"),
                new_output("stream", name="stderr", text=NODEDEF.format(99, 9)),
            ],
        ),
        new_code_cell(
            "raise ValueError('boom <b>')",
            execution_count=6,
            outputs=[
                new_output(
                    "error",
                    ename="ValueError",
                    evalue=f"boom <b> in {run_dir}/artifacts/x.json",
                    traceback=["\x1b[0;31m-----------\x1b[0m", "\x1b[0;31mValueError\x1b[0m: boom <b>"],
                )
            ],
        ),
    ]
    nb = new_notebook(cells=cells)
    path = run_dir / "notebooks" / "01_audit.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    (run_dir / "run.json").write_text("{}")
    return path


@pytest.fixture()
def pages(notebook):
    full, stakeholder = render_reports(notebook, notebook.parent.parent / "reports")
    return full.read_text(encoding="utf-8"), stakeholder.read_text(encoding="utf-8")


def _visible(page: str) -> str:
    soup = BeautifulSoup(page, features="html.parser")
    for tag in soup(["style", "script"]):
        tag.decompose()
    return soup.get_text("\n")


def test_progress_bars_keep_only_a_finished_count(pages):
    full, stakeholder = pages
    text = _visible(stakeholder)
    assert "probing clips: 320 of 320" in text  # stdout, '\r' applied
    assert "features flow: 320 of 320" in text  # widget text/plain
    assert "synthetic clips" not in text and "probing frozen" not in text and "probe:" not in text
    assert "%|" not in text and "0/320" not in text
    assert "probing frozen:   0%|" in full  # the full report keeps what the widget left
    assert text.count("interactive widget: open") == 1  # a non-progress widget still becomes the note


def test_logs_warnings_and_tracebacks_are_removed(pages):
    text = _visible(pages[1])
    for gone in (
        "probing 320 clips",
        "retracing",
        "absl line",
        "InitializeLog",
        "UserWarning",
        "careful now",
        "Traceback",
        "KeyError",
        "x.py",
        "start-up chatter",
        "only a log line",
        "NodeDef",
    ):
        assert gone not in text, gone
    assert "320 usable clips, 0 unusable" in text and "epoch 1 done" in text


def test_a_stream_left_empty_is_dropped(notebook):
    nb = nbformat.read(notebook, as_version=4)
    stakeholder_outputs(nb, notebook.parent.parent)
    assert nb.cells[2].outputs == []  # only a log line and an unfinished bar
    assert [o.output_type for o in nb.cells[5].outputs] == ["stream"]  # stderr gone, stdout kept
    assert [o.output_type for o in nb.cells[3].outputs] == ["display_data", "display_data"]  # frozen bar gone


def test_an_error_becomes_one_sentence(pages):
    full, stakeholder = pages
    text = _visible(stakeholder)
    assert (
        "This step stopped with an error: ValueError: boom <b> in artifacts/x.json. "
        "The report with code has the details."
    ) in text
    assert "boom &lt;b&gt;" in stakeholder and "boom <b>" not in stakeholder
    assert "-----------" not in text and "\x1b" not in stakeholder and "[0;31m" not in stakeholder
    assert "-----------" in full  # the traceback stays in the full report


def test_pandas_trailers_are_removed(pages):
    text = _visible(pages[1])
    assert "first note" in text and "val       46" in text
    assert "Name:" not in text and "dtype:" not in text


def test_paths_are_relative_or_short(pages, tmp_path):
    stakeholder = pages[1]
    text = _visible(stakeholder)
    assert str(tmp_path) not in stakeholder and str(REPO_ROOT) not in text
    assert "run folder: demo" in text
    assert "manifest: artifacts/manifest.csv" in text  # under the run folder
    assert "Clips are listed in" in text and "`artifacts/manifest.csv`" not in stakeholder  # markdown rendered
    assert "artifacts/manifest.csv</code>" in stakeholder
    assert "data: x/clip.mp4" in text  # elsewhere: its last two components
    assert "code: params/base.yaml" in text  # under the repository
    assert "'x/y.csv'" in text and '"features/a.npz"' in text  # written HTML-escaped in the output
    assert "https://example.org/a/b/c" in text and "file:///tmp/a/b/c" in text  # URLs untouched
    assert "split train/val/test" in text  # not a path
    assert 'src="data:image/png;base64,AB+/xy/zz/Q="' in stakeholder  # data URIs untouched
    nb = new_notebook(
        cells=[
            new_code_cell(
                "x",
                outputs=[
                    new_output(
                        "display_data",
                        data={"text/html": "<td>&#x27;/tmp/elsewhere/x/y.csv&#x27; &quot;/tmp/q/r/s&quot;</td>"},
                    )
                ],
            )
        ]
    )
    stakeholder_outputs(nb)
    assert nb.cells[0].outputs[0].data["text/html"] == "<td>&#x27;x/y.csv&#x27; &quot;r/s&quot;</td>"


def test_paths_without_a_run_folder():
    nb = new_notebook(
        cells=[
            new_code_cell(
                "x",
                outputs=[
                    new_output("stream", name="stdout", text="run folder: /tmp/x/demo/artifacts/a.csv, ~/a/b, /tmp\n")
                ],
            )
        ]
    )
    stakeholder_outputs(nb)
    assert nb.cells[0].outputs[0].text == "run folder: artifacts/a.csv, ~/a/b, /tmp\n"


def test_the_clean_copy_has_no_problems_and_a_bad_page_has_each(pages):
    assert copy_problems(pages[1]) == []
    bad = (
        "<html><head><style>.x { background: url(/a/b/c.png) } /* 1e5 WARNING */</style>"
        "<script>var a = '/x/y/z'; // Traceback</script></head><body>"
        '<img src="data:image/png;base64,AB+/xy/zz/Q=" title="/etc/x/y">'
        "<pre>Name: notes, dtype: object</pre><p>Traceback (most recent call last):</p>"
        "<p>WARNING:tensorflow:retracing</p><p>probe:  40%|####  | 4/10</p>"
        "<p>saved to /tmp/run/artifacts/a.csv</p><p>max difference 1.2e-07, lr 3E+4</p></body></html>"
    )
    problems = copy_problems(bad)
    kinds = [p.split(":")[0] for p in problems]
    for kind in (
        "pandas dtype",
        "pandas name",
        "traceback",
        "log warning",
        "progress bar",
        "absolute path",
        "scientific notation",
    ):
        assert kind in kinds, (kind, problems)
    assert any("/tmp/run/artifacts/a.csv" in p for p in problems)
    assert any("1.2e-07" in p for p in problems) and any("3E+4" in p for p in problems)
    assert not any("/a/b/c.png" in p or "/x/y/z" in p or "/etc/x/y" in p or "1e5" in p for p in problems)
    assert all("\n" not in p and len(p) < 160 for p in problems)


def test_render_reports_logs_the_problems_left(tmp_path, caplog):
    nb = new_notebook(
        cells=[
            new_code_cell(
                "x",
                execution_count=1,
                outputs=[new_output("stream", name="stdout", text="artifact check: max difference 1.2e-07\n")],
            )
        ]
    )
    path = tmp_path / "02_x.ipynb"
    nbformat.write(nb, path)
    with caplog.at_level(logging.WARNING, logger="nexara_lib.run.reports"):
        _, stakeholder = render_reports(path, tmp_path / "reports")
    assert stakeholder.is_file()  # written anyway
    assert any("02_x.html" in r.getMessage() and "scientific notation" in r.getMessage() for r in caplog.records)


def test_the_full_copy_folds_repeated_cpp_lines(pages):
    text = _visible(pages[0])
    assert text.count("NodeDef mentions attribute") == 1
    assert "(the same message 5 more times)" in text
    assert "epoch 1 done" in text and "I0000 tensorflow start-up chatter" in text  # a single line stays as it is


def test_quiet_full_copy_drops_streams_left_empty():
    nb = new_notebook(
        cells=[
            new_code_cell(
                "x",
                outputs=[
                    new_output("stream", name="stderr", text=NODEDEF.format(10, 1)),
                    new_output("stream", name="stdout", text="between\n"),
                    new_output("stream", name="stderr", text=NODEDEF.format(11, 2) + NODEDEF.format(12, 3)),
                ],
            )
        ]
    )
    before = copy.deepcopy(nb)
    quiet_full_copy(nb)
    outputs = nb.cells[0].outputs
    assert [o.text for o in outputs[1:]] == ["between\n"]
    assert outputs[0].text == before.cells[0].outputs[0].text + "(the same message 2 more times)\n"
