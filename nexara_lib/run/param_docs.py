"""``docs/parameters.md``, generated from the parameter schema: ``nexara params --out docs/parameters.md``
(``make docs``). ``tests/test_docs.py`` fails when the page and the schema differ."""

from __future__ import annotations

import yaml

from nexara_lib.config import SCHEMA, Param

# The schema's stages in pipeline order, with the heading each gets; a stage not listed here gets its own name.
STAGE_TITLES = {
    "run": "Every notebook (run)",
    "audit": "01 data audit (audit)",
    "features": "02 feature extraction (features)",
    "training": "03 training (training)",
    "ablation": "03 cross-validation, ablations and recipe selection (ablation)",
    "diagnostics": "04 diagnostics (diagnostics)",
    "tta": "05 test-time augmentation (tta)",
    "ensemble": "06 ensemble (ensemble)",
    "deploy": "07 export and detector (deploy)",
    "adaptation": "08 field adaptation (adaptation)",
}

INTRO = """\
# Parameters

<!-- Generated from the parameter schema (nexara_lib/schema.py) by `nexara params --out docs/parameters.md`
     (make docs). Do not edit by hand: tests/test_docs.py fails when this page and the schema differ. -->

Every key is declared once, in the schema (`nexara_lib/schema.py`), with its default, its range and its meaning;
this page is generated from it (`make docs` writes it again after a key changes).

**How parameters are layered.** Keys are flat (papermill merges top-level names only) and are applied left to
right: the schema's defaults, then each `-f` file, then each `--set key=value` (the value is read as YAML). In a
notebook opened in JupyterLab, a key set in its `parameters` cell overrides the files. Unknown keys, wrong types,
values out of range, keys that contradict each other and missing paths are errors that name the key and the file
it came from, before any work starts (exit code 2). Relative paths in a parameter file are resolved against that
file's folder; on the command line, against the current folder.

**The parameter files.** `params/base.yaml` sets only the output folder; an experiment file is always layered
after it and names the data: `params/demo.yaml` (generated clips, CPU), `params/smoke.yaml` (the test suite),
`params/surv_dev.yaml` (the real surveillance clips with the offline TFLite encoder and recipe selection),
`params/rwf2000_vgg19.yaml` (RWF-2000 with VGG19 on a GPU). The `params/ablation_*.yaml` files hold training keys
only: list them in `ablation_configs`, or layer one as a whole run.
"""


def default_text(p: Param) -> str:
    """A key's default as YAML on one line, as it would be written in a parameter file."""
    return yaml.safe_dump(p.default, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _row(p: Param) -> str:
    return f"| `{p.name}` | `{default_text(p)}` | {p.help} |"


def parameters_page() -> str:
    """The whole page: how parameters are layered, then one table per stage (keys in schema order)."""
    present = {p.stage for p in SCHEMA.values()}
    stages = [s for s in STAGE_TITLES if s in present] + sorted(present - set(STAGE_TITLES))
    parts = [INTRO]
    for stage in stages:
        rows = [_row(p) for p in SCHEMA.values() if p.stage == stage]
        parts.append(f"\n## {STAGE_TITLES.get(stage, stage)}\n\n| key | default | meaning |\n|---|---|---|\n")
        parts.append("\n".join(rows) + "\n")
    return "".join(parts)
