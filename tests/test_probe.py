"""The kernel probe: the child process that imports kernels to learn their contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanobuild import probe
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import CheckFailed
from tests.conftest import Sample

USERS_KERNEL = "services/users/users/kernel.py"
ORDERS_KERNEL = "services/orders/orders/kernel.py"


def _probe(sample: Sample, *services: str) -> dict[str, probe.KernelInfo]:
    ws = sample.load()
    kernels = {name: ws.services[name].kernel_module for name in services}
    return probe.probe(ws.package_folders(), kernels)


def test_kernels_import_other_kernels_and_libraries(mini: Sample) -> None:
    mini.edit(ORDERS_KERNEL, "import msgspec", "import msgspec\nfrom users.kernel import User")
    info = _probe(mini, "users", "orders")
    assert info["orders"].error is None
    assert {"User", "Order", "PlaceOrder", "Quantity"} <= set(info["orders"].names)
    assert info["orders"].contracts == {"PlaceOrder": probe.ContractInfo(response="Order")}
    assert set(info["users"].contracts) == {"GetUser", "ListUsers"}


def test_only_the_contracts_that_cannot_cross_are_named(mini: Sample) -> None:
    mini.write(
        USERS_KERNEL,
        (mini.root / USERS_KERNEL).read_text()
        + "\n\nclass Photo:\n    pass\n\n\nclass GetPhoto(Contract[Photo], frozen=True):\n"
        "    id: str\n",
    )
    contracts = _probe(mini, "users")["users"].contracts
    assert [name for name, c in contracts.items() if c.wire_error] == ["GetPhoto"]
    assert contracts["GetUser"] == probe.ContractInfo(response="User")
    assert contracts["ListUsers"] == probe.ContractInfo(response="list[User]")


def test_a_failure_points_at_the_kernel_that_raised(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "class User(", "RATE = 1 / 0\n\n\nclass User(")
    mini.edit(ORDERS_KERNEL, "import msgspec", "import msgspec\nfrom users.kernel import User")
    error = _probe(mini, "orders")["orders"].error
    assert error is not None
    assert "ZeroDivisionError" in error.message
    assert error.path is not None
    assert (mini.load().rel(Path(error.path)), error.line) == (USERS_KERNEL, 6)


def test_nothing_to_import(mini: Sample) -> None:
    assert probe.probe(mini.load().package_folders(), {}) == {}


def test_a_kernel_that_ends_the_child_is_reported(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "import msgspec", "import os\nimport msgspec\nos._exit(3)")
    with pytest.raises(CheckFailed) as failed:
        mini.check()
    assert failed.value.diagnostics == [
        Diagnostic(
            "nano.toml",
            "E211",
            "importing the kernels failed: the child Python exited with status 3",
        )
    ]
