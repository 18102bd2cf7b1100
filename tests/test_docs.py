"""The README and docs/ say only what exists.

Every `nexara ...` command line they show (fenced or inline) names a real subcommand and real options (the argparse
parser), every `--set key=value` and `key: value` a schema key with a valid value, every snake_case name in
backticks a schema key or a name the code uses, every repository path and `make` target exists, and every link
resolves. Every docs page is linked from the README, and docs/parameters.md is the schema's page (`make docs`).
"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from nexara_lib.config import SCHEMA, ParamError, coerce
from nexara_lib.run.cli import build_parser
from nexara_lib.run.param_docs import parameters_page

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
IDS = [str(p.relative_to(ROOT)) for p in PAGES]
REPO_DIRS = ("params/", "tests/", "nexara_lib/", "notebooks/", "benchmarks/", "docs/", ".ci/")
PATH_KINDS = ("path", "paths", "path_list")
NOTEBOOK_PARAMETERS = {"run_dir", "param_files"}  # papermill -p names that are not schema keys


def _fenced_lines(text: str) -> list[str]:
    return [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S) for line in block.splitlines()]


def _spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks."""
    return re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def _command_lines(text: str) -> list[list[str]]:
    """The arguments after `nexara` of every command line, in fences and in inline code."""
    found = []
    for line in [*_fenced_lines(text), *_spans(text)]:
        match = re.search(r"(?:^|[\s/])nexara\s+(.*)$", line)
        if match:
            found.append(shlex.split(match.group(1), comments=True))
    return found


def _placeholder(value: str) -> bool:
    """`N`, `KEY=VALUE`, `...`, `<run>`: a value the reader fills in."""
    return bool(re.fullmatch(r"[A-Z][A-Z_]*|[a-zA-Z]|.*\.\.\..*|<.*>", value.strip()))


def _value_problem(key: str, text: str) -> str | None:
    if key not in SCHEMA:
        return f"{key!r} is not a parameter"
    if _placeholder(text) or SCHEMA[key].kind in PATH_KINDS:
        return None
    try:
        coerce(key, yaml.safe_load(text), "docs")
    except (ParamError, yaml.YAMLError) as err:
        return f"{key}: {text!r} is not a valid value ({err})"
    return None


def _code_corpus() -> str:
    files = [*(ROOT / "nexara_lib").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


@pytest.fixture(scope="module")
def corpus():
    return _code_corpus()


def test_the_parameter_page_is_the_schemas():
    page = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert page == parameters_page(), "docs/parameters.md is stale: run `make docs` (nexara params --out ...)"


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in DOCS if f"(docs/{p.name})" not in readme]
    assert not missing, f"docs pages the README does not link: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_commands_and_their_options_exist(page):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    problems = []
    for args in _command_lines(page.read_text(encoding="utf-8")):
        if not args or _placeholder(args[0]) or args[0][0].isdigit():  # `nexara COMMAND --help`, `nexara 0.1.0 (...)`
            continue
        if args[0].startswith("-"):
            if args[0] not in parser._option_string_actions:
                problems.append(f"nexara {args[0]}: no such option")
            continue
        if args[0] not in commands:
            problems.append(f"nexara {args[0]}: no such command")
            continue
        options = commands[args[0]]._option_string_actions
        for i, arg in enumerate(args[1:], 1):
            if arg.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", arg) and arg.split("=")[0] not in options:
                problems.append(f"nexara {args[0]}: no option {arg}")
            if args[i - 1] == "--set" and "=" in arg and not _placeholder(arg):
                key, value = arg.split("=", 1)
                problem = _value_problem(key, value)
                if problem:
                    problems.append(f"nexara {args[0]} --set {arg}: {problem}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_parameter_names_and_values_exist(page, corpus):
    text = page.read_text(encoding="utf-8")
    problems = []
    for span in _spans(text):
        setting = re.fullmatch(r"([a-z][a-z0-9_]*): (.+)", span)  # `select_recipe: cv`
        if setting:
            problem = _value_problem(*setting.groups())
            if problem:
                problems.append(problem)
        elif re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)+", span) and span not in SCHEMA:
            if not re.search(rf"\b{re.escape(span)}\b", corpus):
                problems.append(f"`{span}` is neither a parameter nor a name the code uses")
    for line in _fenced_lines(text):  # papermill -p NAME VALUE
        for name in re.findall(r"\s-p\s+([a-z_]+)\s", line):
            if name not in SCHEMA and name not in NOTEBOOK_PARAMETERS:
                problems.append(f"papermill -p {name}: not a parameter")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_paths_make_targets_and_links_exist(page):
    text = page.read_text(encoding="utf-8")
    problems = []
    for span in _spans(text):
        path = span.split("#")[0].split(" ")[0].rstrip("/")
        if span.startswith(REPO_DIRS) and not re.search(r"[<>*|{}]|\.\.\.", path) and not (ROOT / path).exists():
            problems.append(f"`{span}`: no such file in the repository")
    targets = _make_targets()
    for line in [*_fenced_lines(text), *_spans(text)]:
        for target in re.findall(r"(?:^|\s)make ([a-z][a-z-]*)", line):
            if target not in targets:
                problems.append(f"make {target}: no such target")
    for link in re.findall(r"\]\(([^)]+)\)", text):
        target = link.split("#")[0]
        if target and not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
            problems.append(f"link ({link}) does not resolve")
    assert not problems, "\n".join(problems)


def test_the_checks_find_stale_text(tmp_path):
    """The checks above can fail: a page with a wrong command, option, value, name, path and link."""
    page = tmp_path / "stale.md"
    page.write_text(
        "```bash\nnexara run -f x.yaml --no-such-flag\nnexara nosuchcommand\n```\n"
        "`nexara detect a.mp4 --run r --set detect_stride=-1` `select_recipe: maybe` `no_such_parameter_anywhere` "
        "`params/missing.yaml` `make nosuchtarget` [gone](missing.md)\n"
    )
    for check in (test_commands_and_their_options_exist, test_paths_make_targets_and_links_exist):
        with pytest.raises(AssertionError):
            check(page)
    with pytest.raises(AssertionError) as err:
        test_parameter_names_and_values_exist(page, _code_corpus())
    assert "select_recipe" in str(err.value) and "no_such_parameter_anywhere" in str(err.value)
