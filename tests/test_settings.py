"""Settings: every NANO_* variable parsed once, a bad value named; the README's table kept true."""

from __future__ import annotations

import ast
import re

import pytest

from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.settings import (
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
    VARIABLES,
    Settings,
    remote_variable,
    timeout_variable,
)
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.secret, settings.max_body, settings.strict) == (None, DEFAULT_MAX_BODY, False)
    assert settings.remote("catalog") is None and settings.timeout("catalog") is None
    assert DEFAULT_MAX_BODY == 1024 * 1024 and DEFAULT_TIMEOUT == 5.0


def test_every_variable_is_read() -> None:
    environ = {
        "NANO_SECRET": "s3cret-HRb3EZQMNwFgE8BAGWXTWA",
        "NANO_MAX_BODY": "10",
        "NANO_STRICT": "yes",
        "NANO_REMOTE_CATALOG": " tcp://10.0.0.7:9100 ",
        "NANO_REMOTE_EMPTY": "  ",
        "NANO_TIMEOUT_CATALOG": "2.5",
        "NANO_INTERCEPTORS": "spy:record, tracing:span",
        "UNRELATED": "x",
    }
    settings = Settings.from_env(environ)
    assert settings.secret == "s3cret-HRb3EZQMNwFgE8BAGWXTWA"
    assert settings.max_body == 10
    assert settings.strict is True
    assert settings.remote("catalog") == "tcp://10.0.0.7:9100"
    assert settings.remote("empty") is None  # blank: as if unset
    assert settings.timeout("catalog") == 2.5
    assert settings.interceptors == ("spy:record", "tracing:span")


def test_an_empty_secret_is_no_secret() -> None:
    assert Settings.from_env({"NANO_SECRET": ""}).secret is None  # "Bearer " opens nothing


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NANO_MAX_BODY", "ten", "NANO_MAX_BODY must be a positive number of bytes, not 'ten'"),
        ("NANO_MAX_BODY", "1.5", "NANO_MAX_BODY must be a positive number of bytes, not '1.5'"),
        ("NANO_MAX_BODY", "0", "NANO_MAX_BODY must be a positive number of bytes, not '0'"),
        ("NANO_MAX_BODY", "-1", "NANO_MAX_BODY must be a positive number of bytes, not '-1'"),
        ("NANO_STRICT", "maybe", "NANO_STRICT must be 1 or 0, not 'maybe'"),
        (
            "NANO_TIMEOUT_AD",
            "soon",
            "NANO_TIMEOUT_AD must be a positive number of seconds, not 'soon'",
        ),
        ("NANO_TIMEOUT_AD", "-2", "NANO_TIMEOUT_AD must be a positive number of seconds, not '-2'"),
        (
            "NANO_TIMEOUT_AD",
            "inf",
            "NANO_TIMEOUT_AD must be a positive number of seconds, not 'inf'",
        ),
        ("NANO_INTERCEPTORS", "spy", "NANO_INTERCEPTORS: 'spy' is not module:name"),
        ("NANO_INTERCEPTORS", "spy:", "NANO_INTERCEPTORS: 'spy:' is not module:name"),
    ],
)
def test_a_bad_value_is_one_error_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value) == message


def test_the_variable_names_of_a_service() -> None:
    assert remote_variable("catalog") == "NANO_REMOTE_CATALOG"
    assert timeout_variable("catalog") == "NANO_TIMEOUT_CATALOG"


# -- the README's table


def readme_table(heading: str) -> dict[str, list[str]]:
    """The rows of the first table after ``heading``, by their first cell (backticks off)."""
    section = README.split(heading, 1)[1]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if set(cells[0]) <= {"-", " "} or cells[0] == "variable":
            continue
        rows[cells[0].strip("`")] = cells
    return rows


def test_the_readme_table_is_the_runtimes_variables() -> None:
    rows = readme_table("## Settings")
    runtime = {v.name: v for v in VARIABLES}
    assert set(runtime) <= set(rows)
    for name, variable in runtime.items():
        _, read_by, meaning, default = rows[name]
        assert read_by == variable.reader, name
        assert meaning == variable.meaning, name
        assert default == variable.default, name


def nano_names_in_code() -> set[str]:
    """Every NANO_* name in a string of nanobuild's code (the docs' examples too)."""
    found = set()
    for path in (REPO / "nanobuild").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found |= set(re.findall(r"NANO_[A-Z_]+[A-Z]", node.value))
    return found


def test_every_variable_the_code_names_is_in_the_readme_table() -> None:
    rows = set(readme_table("## Settings"))
    per_service = {
        "NANO_REMOTE_<SERVICE>": "NANO_REMOTE_",
        "NANO_TIMEOUT_<SERVICE>": "NANO_TIMEOUT_",
    }
    found = nano_names_in_code()
    assert "NANO_SECRET" in found and "NANO_INSTALLER" in found  # the scan works
    missing = [
        name
        for name in sorted(found)
        if name not in rows
        and not any(name.startswith(prefix.rstrip("_")) for prefix in per_service.values())
    ]
    assert missing == []


ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def test_only_the_settings_module_reads_the_runtimes_environment() -> None:
    # read as code, not text: a docstring may show os.environ to a reader
    readers = []
    for path in sorted((REPO / "nanobuild" / "runtime").rglob("*.py")):
        if path.name in ("settings.py", "bootstrap.py"):  # the bootstrap: before any import
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT:
                readers.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                names = {alias.name for alias in node.names}
                readers += [f"{path.name}:{node.lineno}"] if names & ENVIRONMENT else []
    assert readers == []
