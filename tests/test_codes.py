"""The registry of diagnostic codes (``nanobuild.codes``) against the README and the tests.

Three things must agree: the registry, the README's table under "``nanobuild check``"
(code and problem, row for row), and the test suite, which must prove that each code
is really produced.

How "proved" is decided: the test files are read with ``ast`` (no test is run again),
and a code counts as proved by a test function (``test_*`` in ``tests/test_*.py``)
when it appears in a string literal that the test asserts on:

- inside an ``assert`` statement, except under ``not``, ``not in``, ``!=`` or ``is not``
  (those assert the code is absent);
- as the argument of ``Sample.only(code)``, which asserts that the check's single
  diagnostic has that code;
- as ``pytest.raises(..., match=...)``;
- as the ``code=`` of a corpus case (``Case``, ``BinaryCase`` in ``tests/corpus.py``),
  whose runner asserts the code is in the output.

A mere mention (a comment, a filter whose result is never asserted, a docstring) does
not count. What this cannot see is an assertion that passes without the code being
produced, such as ``assert [d for d in found if d.code == "E101"] == []``; the tests
that prove a code compare it with what nanobuild output, never with nothing.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from nanobuild import codes
from nanobuild.diagnostics import Diagnostic, errors
from tests.conftest import REPO

TESTS = Path(__file__).parent
CODE = re.compile(r"\b[EW]\d{3}\b")  # E: an error; W: a warning
NEGATIONS = (ast.NotIn, ast.NotEq, ast.IsNot)


def readme_table() -> dict[str, tuple[str, str]]:
    """Code -> (problem, example), from the table under the README's check heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## `nanobuild check`\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and CODE.fullmatch(cells[0]):
            assert cells[0] not in rows, f"{cells[0]} has two rows in the README"
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_the_readme_table_lists_every_code_with_its_title() -> None:
    table = readme_table()
    assert {code: problem for code, (problem, _) in table.items()} == codes.TITLES
    assert list(table) == sorted(table), "the README's rows are sorted by code"


def test_each_readme_example_shows_its_own_code() -> None:
    for code, (_, example) in readme_table().items():
        assert f"{code} " in example, f"the README's example for {code} shows another code"


def test_each_constant_is_named_after_its_code() -> None:
    constants = {name: value for name, value in vars(codes).items() if CODE.fullmatch(name)}
    assert constants == {code: code for code in codes.TITLES}


def test_a_diagnostic_with_an_unknown_code_is_refused() -> None:
    with pytest.raises(ValueError, match="'E999' is not a diagnostic code"):
        Diagnostic("nano.toml", codes.Code("E999"), "a problem nobody documented")
    encoded = b'{"path": "nano.toml", "code": "E999", "message": "m"}'
    with pytest.raises(msgspec.ValidationError, match="E999"):
        msgspec.json.decode(encoded, type=Diagnostic)


def test_a_codes_letter_is_its_severity() -> None:
    warning = Diagnostic("a.py", codes.W101, "m", 3)
    error = Diagnostic("a.py", codes.E104, "m", 3, severity="warning")  # the code decides
    assert (warning.severity, warning.is_error) == ("warning", False)
    assert (error.severity, error.is_error) == ("error", True)
    assert b'"severity":"warning"' in msgspec.json.encode(warning)
    assert b"severity" not in msgspec.json.encode(error), "errors read as they always did"
    assert errors([warning, error]) == [error]


def test_the_build_side_writes_no_bare_codes() -> None:
    """Every code in nanobuild's own source comes from the registry, by name."""
    bare = [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value}"
        for path in sorted((REPO / "nanobuild").rglob("*.py"))
        if path.name != "codes.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and CODE.fullmatch(node.value)
    ]
    assert bare == [], "use nanobuild.codes instead"


def test_every_code_has_a_test_that_produces_it() -> None:
    proved = proving_tests()
    missing = sorted(code for code in codes.TITLES if code not in proved)
    assert missing == [], "no test asserts that these codes are produced"
    unknown = sorted(set(proved) - set(codes.TITLES))
    assert unknown == [], {code: proved[code] for code in unknown}


# -- reading the tests


def proving_tests() -> dict[str, list[str]]:
    """Code -> the tests (``file::function``) that assert it is produced."""
    proved: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue  # this module names codes only to check the others
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name.startswith("test_")
            ):
                for code in sorted(set(asserted_codes(node))):
                    proved[code].append(f"{path.name}::{node.name}")
            elif isinstance(node, ast.Call) and _called(node) in CASES:
                for code in case_codes(node):
                    proved[code].append(f"{path.name}::{_case_name(node)}")
    return proved


CASES = ("Case", "BinaryCase")  # the corpus's cases whose runner asserts their ``code``


def case_codes(case: ast.Call) -> Iterator[str]:
    """The code a corpus case expects: the literal ``code=`` it is made with."""
    for keyword in case.keywords:
        value = keyword.value
        if (
            keyword.arg == "code"
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            yield from CODE.findall(value.value)


def _case_name(case: ast.Call) -> str:
    first = case.args[0] if case.args else None
    return str(first.value) if isinstance(first, ast.Constant) else "a corpus case"


def asserted_codes(function: ast.AST) -> Iterator[str]:
    """The codes in the literals ``function`` asserts on (see the module's docstring)."""
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            yield from _affirmed(node.test)
        elif isinstance(node, ast.Call) and _called(node) == "only":
            for arg in node.args:
                yield from _affirmed(arg)
        elif isinstance(node, ast.Call) and _called(node) == "raises":
            for keyword in node.keywords:
                if keyword.arg == "match":
                    yield from _affirmed(keyword.value)


def _affirmed(node: ast.AST) -> Iterator[str]:
    """Codes in the string literals of ``node``, leaving out what is asserted absent."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return
    if isinstance(node, ast.Compare) and any(isinstance(op, NEGATIONS) for op in node.ops):
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield from CODE.findall(node.value)
    for child in ast.iter_child_nodes(node):
        yield from _affirmed(child)


def _called(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def test_the_reading_of_tests_tells_asserting_from_mentioning() -> None:
    source = """
def test_example(mini):
    mini.only("E101")
    assert "E102 dependency cycle" in text
    assert "E103" not in text and not "E104" in text
    found = [d for d in mini.check() if d.code == "E105"]  # filtered, never asserted
    with pytest.raises(PackError, match="E106"):
        pass
"""
    assert sorted(asserted_codes(ast.parse(source))) == ["E101", "E102", "E106"]


def test_a_corpus_case_proves_the_code_it_is_made_with() -> None:
    tree = ast.parse('CASES = [Case("bom", files={}, args=["check"], exit=2, code="E001")]')
    [call] = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert (list(case_codes(call)), _case_name(call)) == (["E001"], "bom")
