"""One home per contract rule: arithmetic, verdicts, the run's tokenizer and the CLI's defaults.

Each rule is read once, in one module, and every other module calls it; a second copy drifts
(the old SVAMP label tokenizer dropped "x" and "−" that the evaluator read). These tests read the
source with ``ast`` and fail on a second home:

- arithmetic is tokenized and parsed only in ``student/arithmetic.py``: no other module holds a
  regular expression over the operators or a recursive-descent ``expression/term/factor``;
- verdict text is read only in ``student/formats.py`` (``read_verdict``): no other module builds
  a ``Verdict`` from text, compares text to a verdict word or matches one with a regex; and the
  held-out verdict agreement (generate, then read verdicts) is computed only in
  ``training/student/verdicts.py``;
- a run's tokenizer is trained and saved only through ``training/student/tokenizer.py``;
- ``training/student/cli.py`` writes no default: its distill options take theirs (and their help)
  from ``DistillConfig``.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the library: what the wheel installs (tests and benchmarks may do as they like)
LIBRARY_DIRS = ("mindmirror", "student", "training", "export", "service")
ARITHMETIC = "student/arithmetic.py"
FORMATS = "student/formats.py"
VERDICT_METRIC = "training/student/verdicts.py"
TOKENIZER = "training/student/tokenizer.py"
CLI = "training/student/cli.py"
VERDICT_WORDS = {"correct", "wrong", "incorrect", "uncertain"}
_REGEX_FUNCTIONS = {
    "compile",
    "search",
    "match",
    "fullmatch",
    "findall",
    "finditer",
    "sub",
    "split",
}
#: a character class holding both "*" and "/": the operators of an arithmetic tokenizer
_OPERATOR_CLASS = re.compile(r"\[[^\]]*(\*[^\]]*/|/[^\]]*\*)[^\]]*\]")


def _library() -> dict[str, ast.Module]:
    files = {}
    for top in LIBRARY_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                name = path.relative_to(ROOT).as_posix()
                files[name] = ast.parse(path.read_text(encoding="utf-8"), filename=name)
    return files


LIBRARY = _library()


def _called_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _regex_patterns(tree: ast.Module) -> list[tuple[int, str]]:
    """String literals passed as the pattern of an ``re`` function (f-strings by their text)."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.func.attr in _REGEX_FUNCTIONS
            and node.args
        ):
            pattern = node.args[0]
            parts = [pattern] if isinstance(pattern, ast.Constant) else []
            if isinstance(pattern, ast.JoinedStr):
                parts = [v for v in pattern.values if isinstance(v, ast.Constant)]
            text = "".join(p.value for p in parts if isinstance(p.value, str))
            found.append((node.lineno, text))
    return found


def _is_verdict_word(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip().lower() in VERDICT_WORDS
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return any(_is_verdict_word(element) for element in node.elts)
    if isinstance(
        node, ast.ListComp | ast.SetComp | ast.GeneratorExp
    ):  # {v.value for v in Verdict}
        return any(isinstance(g.iter, ast.Name) and g.iter.id == "Verdict" for g in node.generators)
    return False


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _calls(node: ast.AST) -> set[str]:
    return {name for n in ast.walk(node) if isinstance(n, ast.Call) and (name := _called_name(n))}


# ----- arithmetic --------------------------------------------------------------------------
def test_the_rules_can_see_the_library() -> None:
    assert {ARITHMETIC, FORMATS, VERDICT_METRIC, TOKENIZER, CLI} <= set(LIBRARY)
    assert _OPERATOR_CLASS.search(r"[-+*/()]")
    assert not _OPERATOR_CLASS.search(r"[a-e]\s*/")


def test_only_student_arithmetic_tokenizes_arithmetic() -> None:
    offenders = [
        f"{name}:{line}: {pattern!r}"
        for name, tree in LIBRARY.items()
        if name != ARITHMETIC
        for line, pattern in _regex_patterns(tree)
        if _OPERATOR_CLASS.search(pattern)
    ]
    assert not offenders, (
        "arithmetic tokens are read by student/arithmetic.py (tokenize, parse, "
        f"expression_prefix, step_claims); found another tokenizer: {offenders}"
    )
    assert any(_OPERATOR_CLASS.search(p) for _, p in _regex_patterns(LIBRARY[ARITHMETIC]))


def test_only_student_arithmetic_parses_arithmetic() -> None:
    shape = {"expression", "term", "factor"}
    offenders = [
        f"{name}:{function.lineno}: {function.name}"
        for name, tree in LIBRARY.items()
        if name != ARITHMETIC
        for function in _functions(tree)
        if function.name.lstrip("_") in shape
    ]
    assert not offenders, f"a second recursive-descent arithmetic parser: {offenders}"
    names = {function.name.lstrip("_") for function in _functions(LIBRARY[ARITHMETIC])}
    assert shape <= names


# ----- verdicts ----------------------------------------------------------------------------
def test_verdict_text_is_read_only_by_read_verdict() -> None:
    offenders = []
    for name, tree in LIBRARY.items():
        if name == FORMATS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called_name(node) == "Verdict":
                offenders.append(f"{name}:{node.lineno}: Verdict(...) built from text")
            if isinstance(node, ast.Compare) and any(
                _is_verdict_word(operand) for operand in [node.left, *node.comparators]
            ):
                offenders.append(f"{name}:{node.lineno}: text compared to a verdict word")
        for line, pattern in _regex_patterns(tree):
            if any(word in pattern.lower() for word in VERDICT_WORDS):
                offenders.append(f"{name}:{line}: a regex for verdicts {pattern!r}")
    assert not offenders, f"verdicts are read with student.formats.read_verdict: {offenders}"


def test_the_held_out_verdict_agreement_has_one_home() -> None:
    offenders = [
        f"{name}:{function.lineno}: {function.name}"
        for name, tree in LIBRARY.items()
        if name != VERDICT_METRIC
        for function in _functions(tree)
        if {"generate_texts", "read_verdict"} <= _calls(function)
    ]
    assert not offenders, (
        "generating verdicts and reading them is the held-out verdict metric of "
        f"training/student/verdicts.py (measure_verdicts); found another: {offenders}"
    )
    assert "measure_verdicts" in {f.name for f in _functions(LIBRARY[VERDICT_METRIC])}


# ----- the run's tokenizer -----------------------------------------------------------------
def test_a_run_trains_its_tokenizer_only_through_write_tokenizer() -> None:
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in LIBRARY.items()
        if name != TOKENIZER
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _called_name(node) == "train_tokenizer"
    ]
    assert not offenders, f"call training.student.tokenizer.write_tokenizer instead: {offenders}"


# ----- the CLI's defaults ------------------------------------------------------------------
def test_the_training_cli_writes_no_default() -> None:
    offenders = []
    for node in ast.walk(LIBRARY[CLI]):
        if isinstance(node, ast.Call) and _called_name(node) in ("add_argument", "_option"):
            for keyword in node.keywords:
                suppressed = (
                    isinstance(keyword.value, ast.Attribute) and keyword.value.attr == "SUPPRESS"
                )
                if keyword.arg == "default" and not suppressed:
                    offenders.append(f"{CLI}:{node.lineno}: default={ast.unparse(keyword.value)}")
    assert not offenders, (
        "a default belongs to DistillConfig (or to the library function the option is passed "
        f"to); the CLI passes only what was given: {offenders}"
    )


def _subparser(command: str) -> argparse.ArgumentParser:
    from mindmirror.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[command]


@pytest.mark.parametrize("command", ["distill", "experiment"])
def test_distill_options_are_the_config_model(command: str) -> None:
    from mindmirror.training.student.distill import DistillConfig

    fields = DistillConfig.model_fields
    own = {"output", "work_dir", "keep_work_dir", "force"} if command == "experiment" else set()
    by_field = {
        a.dest: a for a in _subparser(command)._actions if a.dest in set(fields) - own
    }  # experiment's --output is the folder of its runs, not a field
    missing = set(fields) - set(by_field) - own
    assert not missing, f"DistillConfig fields without a {command} flag: {sorted(missing)}"
    for field, action in by_field.items():
        assert action.default is argparse.SUPPRESS, field
        if field in ("task", "progress"):  # inferred from the data; --no-progress says "no"
            continue
        info = fields[field]
        assert action.help.startswith(info.description.replace("%", "%%")), field
        if not (info.is_required() or info.default is None or isinstance(info.default, bool)):
            assert f"(default: {info.default})" in action.help, field


def test_options_not_given_take_the_config_defaults(tmp_path: Path) -> None:
    from mindmirror.training.student.cli import _config
    from mindmirror.training.student.distill import DistillConfig

    from mindmirror.cli import build_parser

    data = tmp_path / "data.jsonl"
    data.write_text('{"task": "svamp"}\n')
    args = build_parser().parse_args(["distill", "--data", str(data), "-o", str(tmp_path / "b")])
    config = _config(args, args.output)
    assert config == DistillConfig(data=data, task="svamp", output=tmp_path / "b")
    args = build_parser().parse_args(
        ["distill", "--data", str(data), "-o", "b", "--lr", "0.01", "--no-self-evaluation"]
    )
    given = _config(args, args.output)
    assert (given.learning_rate, given.self_evaluation) == (0.01, False)
