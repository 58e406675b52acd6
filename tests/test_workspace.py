"""nano.toml -> Workspace: every mistake named by file, line and key (exit-2 problems)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nanobuild import workspace
from nanobuild.errors import WorkspaceError
from tests.conftest import Sample


def problems(sample: Sample) -> list[tuple[str, int | None, str]]:
    with pytest.raises(WorkspaceError) as info:
        sample.load()
    return [(d.code, d.line, d.message) for d in info.value.diagnostics]


def test_loads_the_clean_sample(mini: Sample) -> None:
    ws = mini.load()
    assert ws.name == "mini"
    assert set(ws.services) == {"users", "orders"}
    orders = ws.services["orders"]
    assert orders.depends == ("users",)
    assert orders.package_dir == mini.root / "services/orders/orders"
    assert ws.libraries["units"].package == "units"
    assert ws.ingress.port == 8000 and ws.ingress.static is None


def test_toml_syntax_error_names_the_line(mini: Sample) -> None:
    mini.edit("nano.toml", 'name = "mini"', 'name = "mini')
    [(code, line, message)] = problems(mini)
    assert code == "E001" and line == 3
    assert "TOML syntax error" in message


def test_unknown_key_suggests_the_right_one(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depend = ["users"]')
    with pytest.raises(WorkspaceError) as info:
        mini.load()
    [d] = info.value.diagnostics
    assert (d.code, d.line) == ("E002", 11)
    assert "services.orders.depend" in d.message
    assert d.hint == "did you mean `depends`?"


def test_unknown_top_level_table(mini: Sample) -> None:
    mini.edit("nano.toml", "[libraries.units]", "[librarys.units]")
    [(code, _, message)] = problems(mini)
    assert code == "E002" and "librarys" in message


def test_wrong_value_type(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depends = "users"')
    [(code, line, message)] = problems(mini)
    assert (code, line) == ("E003", 11)
    assert "services.orders.depends" in message and "array" in message


def test_missing_required_key(mini: Sample) -> None:
    mini.edit("nano.toml", 'path = "services/users"\n', "")
    [(code, _, message)] = problems(mini)
    assert code == "E003" and "services.users.path" in message


def test_missing_workspace_table(mini: Sample) -> None:
    mini.edit("nano.toml", '[workspace]\nname = "mini"\n', "")
    assert [p[0] for p in problems(mini)] == ["E003"]


def test_missing_path(mini: Sample) -> None:
    mini.edit("nano.toml", '"services/users"', '"services/userz"')
    [(code, line, message)] = problems(mini)
    assert (code, line) == ("E004", 6)
    assert "no such folder" in message


@pytest.mark.parametrize("path", ["../outside", "/tmp", "services/../../outside"])
def test_path_leaving_the_workspace(mini: Sample, path: str) -> None:
    (mini.root.parent / "outside").mkdir(exist_ok=True)
    mini.edit("nano.toml", '"services/users"', f'"{path}"')
    [(code, line, message)] = problems(mini)
    assert (code, line) == ("E005", 6)
    assert path in message


def test_symlink_out_of_the_workspace(mini: Sample, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, mini.root / "services" / "link")
    mini.edit("nano.toml", '"services/users"', '"services/link"')
    [(code, _, message)] = problems(mini)
    assert code == "E005" and "leaves the workspace" in message


def test_service_name_not_an_identifier(mini: Sample) -> None:
    mini.edit("nano.toml", "[services.users]", "[services.user-db]")
    mini.edit("nano.toml", 'depends = ["users"]', "depends = []")
    [(code, line, message)] = problems(mini)
    assert (code, line) == ("E006", 5)
    assert "'user-db' is not a Python identifier" in message


def test_invalid_requirement(mini: Sample) -> None:
    mini.edit("nano.toml", '"msgspec>=0.18"', '"msgspec>>0.18"')
    [(code, line, _)] = problems(mini)
    assert (code, line) == ("E007", 13)


def test_every_problem_is_reported_at_once(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depend = ["users"]')
    mini.edit("nano.toml", '"services/users"', '"../x"')
    mini.edit("nano.toml", 'path = "libs/units"', "path = 3")
    assert sorted(p[0] for p in problems(mini)) == ["E002", "E003", "E005"]


def test_unreadable_file(mini: Sample) -> None:
    (mini.root / "nano.toml").write_bytes(b"\xff\xfe garbage")
    [(code, _, message)] = problems(mini)
    assert code == "E001" and "cannot read" in message


def test_find_walks_up_to_the_workspace(mini: Sample) -> None:
    assert workspace.find(mini.root / "services" / "users" / "users") == mini.root.resolve()


def test_find_outside_any_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        workspace.find(tmp_path)
    assert info.value.diagnostics[0].code == "E000"


def test_a_service_and_a_library_may_not_share_a_name(mini: Sample) -> None:
    mini.edit("nano.toml", "[libraries.units]", "[libraries.users]")
    [(code, _, message)] = problems(mini)
    assert code == "E010"
    assert "`services.users` and `libraries.users` share one name" in message


def test_a_keyword_is_not_a_name(mini: Sample) -> None:
    mini.edit("nano.toml", "[services.users]", "[services.class]")
    mini.edit("nano.toml", 'depends = ["users"]', "depends = []")
    [(code, _, _)] = problems(mini)
    assert code == "E006"


def test_a_nul_in_a_path(mini: Sample) -> None:
    mini.edit("nano.toml", '"services/users"', '"services/us\\u0000ers"')
    [(code, _, message)] = problems(mini)
    assert code == "E004" and "NUL" in message
