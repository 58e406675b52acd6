"""The real ``nanobuild`` command, run as a subprocess: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, Sample


def nanobuild(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_check_clean_workspace_exits_0(mini: Sample) -> None:
    done = nanobuild("check", "--workspace", str(mini.root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mini: 2 services, 1 library: all checks passed" in done.stdout


def test_check_finds_the_workspace_from_a_subfolder(mini: Sample) -> None:
    done = nanobuild("check", cwd=mini.root / "services" / "orders")
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_problems_exit_1_with_compiler_style_lines(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', "depends = []")
    done = nanobuild("check", cwd=mini.root)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith(
        "services/orders/orders/handlers.py:2: E103 orders imports users.kernel"
    )
    assert '    hint: add "users" to services.orders.depends' in done.stdout
    assert "1 problem found" in done.stderr


def test_paths_are_relative_to_where_you_stand(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', "depends = []")
    done = nanobuild("check", "-w", "mini", cwd=mini.root.parent)
    assert done.stdout.startswith("mini/services/orders/orders/handlers.py:2: E103")


def test_check_json_for_ci(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depends = ["users", "ghost"]')
    done = nanobuild("check", "--format", "json", "-w", str(mini.root))
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["ok"] is False
    assert doc["diagnostics"][0]["code"] == "E101"
    assert doc["diagnostics"][0]["path"] == "nano.toml"
    assert doc["diagnostics"][0]["line"] == 11


def test_a_kernel_that_ends_the_checker_is_reported_in_the_format_asked(mini: Sample) -> None:
    kernel = "services/users/users/kernel.py"
    mini.edit(kernel, "import msgspec", "import os\nimport msgspec\nos._exit(3)")
    done = nanobuild("check", "--format", "json", "-w", str(mini.root))
    assert done.returncode == 1
    assert json.loads(done.stdout)["diagnostics"] == [
        {
            "path": kernel,
            "code": "E211",
            "message": f"importing {kernel} ended the child Python (exit status 3)",
        }
    ]


def test_invalid_config_exits_2(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depend = ["users"]')
    done = nanobuild("check", "-w", str(mini.root))
    assert done.returncode == 2
    assert "nano.toml:11: E002 unknown key `services.orders.depend`" in done.stderr
    assert "did you mean `depends`?" in done.stderr


def test_invalid_config_as_json_exits_2(mini: Sample) -> None:
    mini.edit("nano.toml", 'name = "mini"', 'name = "mini')
    done = nanobuild("check", "-f", "json", "-w", str(mini.root))
    assert done.returncode == 2
    assert json.loads(done.stdout)["diagnostics"][0]["code"] == "E001"


def test_no_workspace_exits_2(tmp_path: Path) -> None:
    done = nanobuild("check", cwd=tmp_path)
    assert done.returncode == 2
    assert "E000 no nano.toml here or in any parent folder" in done.stderr


def test_missing_workspace_option_path_exits_2(tmp_path: Path) -> None:
    done = nanobuild("check", "-w", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert "E000 no such workspace folder or nano.toml" in done.stderr


def test_unknown_format_is_a_usage_error(mini: Sample) -> None:
    done = nanobuild("graph", "--format", "png", "-w", str(mini.root))
    assert done.returncode == 2
    assert "png" in done.stderr


def test_graph_formats(mini: Sample) -> None:
    assert nanobuild("graph", "-w", str(mini.root)).stdout == "mini\n└── orders\n    └── users\n"
    mermaid = nanobuild("graph", "-f", "mermaid", "-w", str(mini.root)).stdout
    assert mermaid.splitlines()[0] == "graph TD" and "    orders --> users" in mermaid
    dot = nanobuild("graph", "-f", "dot", "-w", str(mini.root)).stdout
    assert dot.startswith('digraph "mini" {') and '"orders" -> "users";' in dot


def test_graph_of_invalid_config_exits_2(mini: Sample) -> None:
    mini.edit("nano.toml", 'name = "mini"', "name = 3")
    assert nanobuild("graph", "-w", str(mini.root)).returncode == 2


def test_help_explains_each_command() -> None:
    done = nanobuild("--help")
    assert done.returncode == 0
    assert "check" in done.stdout and "graph" in done.stdout
    assert "Exit 0 when clean" in nanobuild("check", "--help").stdout


def test_version() -> None:
    from nanobuild import __version__

    assert nanobuild("--version").stdout.strip() == f"nanobuild {__version__}"
