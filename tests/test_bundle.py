"""``nanobuild bundle`` from the command line: the whole flow, its output and its refusals."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import Sample
from tests.packing import bare_python, report, run_binary
from tests.test_cli import nanobuild

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANO_CACHE_DIR", str(tmp_path / "cache"))


def bundle(sample: Sample, wheelhouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``bundle``, offline from ``wheelhouse``, after locking from it: the sample's own
    nano.lock pins the package index's files, which the wheelhouse does not hold."""
    locked = lock(sample, wheelhouse)
    if locked.returncode != 0:
        return locked
    return nanobuild("bundle", "--offline", "--find-links", str(wheelhouse), *args, cwd=sample.root)


def lock(sample: Sample, wheelhouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return nanobuild("lock", "--offline", "--find-links", str(wheelhouse), *args, cwd=sample.root)


def test_bundle_reports_each_step_and_writes_the_binary(
    mini: Sample, wheelhouse: Path, tmp_path: Path
) -> None:
    done = bundle(mini, wheelhouse)
    assert done.returncode == 0, done.stderr
    for step in ("check", "generate", "stage", "collect", "pack"):
        assert f"done {step}" in done.stderr
    assert "dist/mini.pyz" in done.stderr and "run it with `python dist/mini.pyz`" in done.stderr
    binary = mini.root / "dist" / "mini.pyz"
    python = bare_python(tmp_path / "venv")
    (tmp_path / "home").mkdir()
    info = run_binary(python, binary, "info", "--json", home=tmp_path / "home")
    facts = report(info)
    assert facts["workspace"] == "mini" and facts["services"] == ["users", "orders"]
    called = run_binary(
        python, binary, "call", "orders.PlaceOrder", '{"user_id": "u1", "quantity": {"amount": 2}}',
        home=tmp_path / "home",
    )  # fmt: skip
    assert report(called)["user_name"] == "Ada"


def test_quiet_prints_nothing_and_a_rebuild_reuses_the_stage(
    mini: Sample, wheelhouse: Path
) -> None:
    assert bundle(mini, wheelhouse).returncode == 0
    again = bundle(mini, wheelhouse)
    assert "done stage (cached)" in again.stderr
    quiet = bundle(mini, wheelhouse, "-q")
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""


def test_only_packs_the_named_services_and_the_kernels_they_call(
    mini: Sample, wheelhouse: Path
) -> None:
    done = bundle(mini, wheelhouse, "--only", "orders")
    assert done.returncode == 0, done.stderr
    binary = mini.root / "dist" / "mini-orders.pyz"
    names = zipfile.ZipFile(binary).namelist()
    assert "site-packages/orders/handlers.py" in names
    assert "site-packages/users/kernel.py" in names
    assert "site-packages/users/handlers.py" not in names
    ingress = zipfile.ZipFile(binary).read("site-packages/nano_ingress.py").decode()
    assert 'packed=("orders",),' in ingress  # users is known (to reach it) but not packed
    assert "# Rebuild with: nanobuild bundle --only orders" in ingress


def test_a_workspace_that_fails_check_is_not_bundled(mini: Sample, wheelhouse: Path) -> None:
    assert bundle(mini, wheelhouse).returncode == 0
    binary = mini.root / "dist" / "mini.pyz"
    before = binary.read_bytes()
    mini.edit("nano.toml", 'depends = ["users"]', "depends = []")
    done = bundle(mini, wheelhouse)
    assert done.returncode == 1
    assert "E103 orders imports users.kernel" in done.stderr
    assert sorted(p.name for p in (mini.root / "dist").iterdir()) == ["mini.pyz"]
    assert binary.read_bytes() == before


def test_only_with_an_unknown_service(mini: Sample, wheelhouse: Path) -> None:
    done = bundle(mini, wheelhouse, "--only", "user")
    assert done.returncode == 2
    assert "E008 --only names user, which is not a service of this workspace" in done.stderr
    assert "did you mean `users`?" in done.stderr
    assert not (mini.root / "dist").exists()


def test_a_requirement_that_cannot_be_locked(mini: Sample, wheelhouse: Path) -> None:
    mini.edit("nano.toml", '"msgspec>=0.18"', '"msgspec>=0.18", "no-such-package-anywhere"')
    before = (mini.root / "nano.lock").read_text()
    done = bundle(mini, wheelhouse)  # it stops at the lock
    assert done.returncode == 1
    assert (
        "nano.toml:13: E505 cannot lock the requirements: no-such-package-anywhere, "
        "needed by service orders" in done.stderr
    )
    assert (mini.root / "nano.lock").read_text() == before  # never half-written
    assert not (mini.root / "dist").exists()


def test_a_source_date_epoch_that_is_not_a_number(
    mini: Sample, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "abc")
    done = bundle(mini, wheelhouse)  # the helper also asserts there is no traceback
    assert done.returncode == 1
    assert "SOURCE_DATE_EPOCH: E405 'abc' is not a number of seconds" in done.stderr
    assert "done generate" not in done.stderr  # the ingress is never rendered with it
    assert not (mini.root / "dist").exists()
