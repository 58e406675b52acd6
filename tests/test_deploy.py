"""``nanobuild deploy compose|k8s``: the boutique's placement as a Containerfile, a
compose.yaml and Kubernetes manifests, checked against the Kubernetes schemas
offline; the output is deterministic and never lands over a file it did not write."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nanobuild import deploy, workspace
from nanobuild.errors import BuildError
from nanobuild.runtime.settings import VARIABLES
from nanobuild.runtime.spec import DISCOVERY_VARIABLE, SECRET_FILE_VARIABLE
from tests.conftest import REPO, Sample

PLACEMENT = """
[placement.front]
services = ["checkout", "payment", "shipping", "email"]

[placement.catalog]
services = ["catalog", "recommendation", "ad"]
replicas = 2
resources = { cpu = "250m", memory = "128Mi" }
"""  # cart and currency are in no group: each forms its own
GROUPS = ["cart", "catalog", "currency", "front"]
KUBERNETES = "1.30.0"  # the schemas the manifests are held to


@pytest.fixture
def boutique(tmp_path: Path) -> workspace.Workspace:
    """A copy of the example workspace with a placement: two groups, two services alone."""
    root = tmp_path / "boutique"
    for folder in ("services", "libs", "frontend"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("tests"))
    # this test's placement in place of the example's own (the last tables of its nano.toml)
    toml = (REPO / "nano.toml").read_text().split("\n[placement.", 1)[0]
    (root / "nano.toml").write_text(toml + PLACEMENT)
    return workspace.load(root)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def nanobuild(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nanobuild", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_the_output_is_deterministic(boutique: workspace.Workspace, tmp_path: Path) -> None:
    for target in deploy.TARGETS:
        deploy.deploy(boutique, target, boutique.root / "deploy")
    first = tree(boutique.root / "deploy")
    moved = tmp_path / "elsewhere"
    # another folder, the same workspace, the targets the other way round
    shutil.copytree(boutique.root, moved, ignore=shutil.ignore_patterns("deploy"))
    again = workspace.load(moved)
    for target in reversed(deploy.TARGETS):
        deploy.deploy(again, target, moved / "deploy")
    assert tree(moved / "deploy") == first
    assert str(tmp_path).encode() not in b"".join(first.values())  # no path of this machine


def compose(ws: workspace.Workspace) -> dict[str, Any]:
    deploy.deploy(ws, "compose", ws.root / "deploy")
    loaded: dict[str, Any] = yaml.safe_load((ws.root / "deploy" / "compose.yaml").read_text())
    return loaded


def test_compose_runs_one_service_per_group(boutique: workspace.Workspace) -> None:
    services = compose(boutique)["services"]
    assert sorted(services) == GROUPS
    front, catalog = services["front"], services["catalog"]
    assert front["command"] == ["serve", "--host", "0.0.0.0", "--group", "front"]
    assert catalog["deploy"]["replicas"] == 2 and front["deploy"]["replicas"] == 1
    assert catalog["deploy"]["resources"]["limits"] == {"cpus": "0.25", "memory": 128 * 2**20}
    # the front door reaches every group, so it starts once they are healthy
    assert front["depends_on"] == {
        g: {"condition": "service_healthy"} for g in GROUPS if g != "front"
    }
    assert "depends_on" not in catalog  # recommendation calls catalog, in its own group
    assert front["ports"] == ["8000:8000"] and "ports" not in catalog
    for service in services.values():
        assert "/readyz" in service["healthcheck"]["test"][-1]
        assert service["secrets"] == ["nano_secret"]
        assert service["environment"][SECRET_FILE_VARIABLE] == "/run/secrets/nano_secret"
        assert service["environment"][DISCOVERY_VARIABLE] == "tcp://{group}:{port}"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Containerfile"}


def test_compose_reads_the_secret_from_a_file(boutique: workspace.Workspace) -> None:
    assert compose(boutique)["secrets"] == {"nano_secret": {"file": "./nano_secret"}}
    assert (boutique.root / "deploy" / ".gitignore").read_text().splitlines()[-1] == "nano_secret"


@pytest.mark.parametrize(
    "command",
    [["podman-compose"], ["docker", "compose"], ["podman", "compose"]],
)
def test_compose_config_accepts_it(boutique: workspace.Workspace, command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(command)} cannot run here: {probe.stderr.strip()[:200]}")
    compose(boutique)
    out = boutique.root / "deploy"
    (out / "nano_secret").write_text("x" * 43)
    done = subprocess.run(
        [*command, "-f", str(out / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=out,
    )
    assert done.returncode == 0, done.stderr
    assert "catalog" in done.stdout


def test_the_containerfile(boutique: workspace.Workspace) -> None:
    deploy.deploy(boutique, "compose", boutique.root / "deploy")
    text = (boutique.root / "deploy" / "Containerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert lines[0] == f"ARG BASE=docker.io/library/python:{python}-slim"
    assert lines[1] == "FROM ${BASE}"
    assert [line for line in lines if line.startswith(("COPY", "ADD"))] == [
        "COPY dist/boutique.pyz /app/boutique.pyz"
    ]  # the binary alone
    assert "USER 10001:10001" in lines
    assert lines[-1] == 'CMD ["serve", "--host", "0.0.0.0", "--group", "front"]'
    deploy.deploy(boutique, "compose", boutique.root / "deploy", base_image="localhost/debian-py")
    assert (
        "ARG BASE=localhost/debian-py\n" in (boutique.root / "deploy" / "Containerfile").read_text()
    )


def manifests(ws: workspace.Workspace) -> dict[str, list[dict[str, Any]]]:
    deploy.deploy(ws, "k8s", ws.root / "deploy")
    folder = ws.root / "deploy" / "k8s"
    return {
        p.name: list(yaml.safe_load_all(p.read_text()))
        for p in sorted(folder.glob("*.yaml"))
        if p.name != "kustomization.yaml"
    }


def test_the_manifests_pass_the_kubernetes_schemas(boutique: workspace.Workspace) -> None:
    found = manifests(boutique)
    for documents in found.values():
        for document in documents:
            # strict: a field the schema does not know is an error too
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
    kinds = {name: [d["kind"] for d in docs] for name, docs in found.items()}
    assert kinds == {
        "cart.yaml": ["Deployment", "Service"],
        "catalog.yaml": ["Deployment", "Service", "PodDisruptionBudget"],  # 2 replicas
        "currency.yaml": ["Deployment", "Service"],
        "front.yaml": ["Deployment", "Service", "Service"],  # and the front door's
        "secret.example.yaml": ["Secret"],
    }


def test_a_broken_manifest_fails_the_schemas() -> None:
    # the validation above can fail: a Deployment whose replicas is text does
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    broken["spec"] = {"replicas": "two", "selector": {}, "template": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_each_group_is_a_deployment_behind_a_headless_service(
    boutique: workspace.Workspace,
) -> None:
    deployment, internal, budget = manifests(boutique)["catalog.yaml"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--group", "catalog"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"memory": "128Mi"},
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        SECRET_FILE_VARIABLE: "/etc/nano/nano_secret",
        DISCOVERY_VARIABLE: "tcp://{group}:{port}",
    }
    assert pod["volumes"][0]["secret"]["secretName"] == "boutique-secret"
    assert internal["spec"]["clusterIP"] == "None"  # every replica is seen, by name
    assert (
        internal["metadata"]["name"] == "catalog" and internal["spec"]["ports"][0]["port"] == 9100
    )
    assert budget["spec"]["maxUnavailable"] == 1
    front = manifests(boutique)["front.yaml"][2]
    assert (front["metadata"]["name"], front["spec"]["ports"][0]["port"]) == ("front-http", 8000)


def test_the_secret_is_a_placeholder_applied_by_no_one(boutique: workspace.Workspace) -> None:
    [secret] = manifests(boutique)["secret.example.yaml"]
    assert secret["stringData"] == {"nano_secret": "CHANGE-ME"}  # too weak: refused at start
    kustomization = yaml.safe_load((boutique.root / "deploy/k8s/kustomization.yaml").read_text())
    assert kustomization["resources"] == [f"{g}.yaml" for g in GROUPS]
    assert (
        "kubectl create secret generic boutique-secret"
        in (boutique.root / "deploy/k8s/secret.example.yaml").read_text()
    )


def test_kustomize_builds_it(boutique: workspace.Workspace) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    manifests(boutique)
    done = subprocess.run(
        ["kubectl", "kustomize", str(boutique.root / "deploy" / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(done.stdout)]
    assert kinds.count("Deployment") == 4 and "Secret" not in kinds


def test_the_variables_are_the_runtimes() -> None:
    names = {v.name for v in VARIABLES}
    assert {SECRET_FILE_VARIABLE, DISCOVERY_VARIABLE} <= names


# -- bad input: nothing half-written, nothing overwritten that deploy did not write


def test_a_folder_holding_other_files_is_refused(boutique: workspace.Workspace) -> None:
    out = boutique.root / "deploy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="E045") as caught:
        deploy.deploy(boutique, "k8s", out)
    assert "notes.txt" in str(caught.value)
    assert tree(out) == {"notes.txt": b"mine"}  # nothing written


def test_an_edited_file_is_not_overwritten(boutique: workspace.Workspace) -> None:
    out = boutique.root / "deploy"
    deploy.deploy(boutique, "compose", out)
    (out / "nano_secret").write_text("the user's own")  # kept, never counted as foreign
    deploy.deploy(boutique, "k8s", out)  # the other target beside it
    assert (out / "compose.yaml").is_file() and (out / "k8s/front.yaml").is_file()
    assert (out / "nano_secret").read_text() == "the user's own"
    (out / "compose.yaml").write_text("edited\n")
    before = tree(out)
    with pytest.raises(BuildError) as caught:
        deploy.deploy(boutique, "compose", out)
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.code == "E045" and "compose.yaml" in diagnostic.message
    assert tree(out) == before


def test_the_cli_refuses_in_one_message(mini: Sample) -> None:
    (mini.root / "deploy").mkdir()
    (mini.root / "deploy" / "README").write_text("mine")
    done = nanobuild("deploy", "k8s", cwd=mini.root)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "E045" in done.stderr and "README" in done.stderr
    done = nanobuild("deploy", "helm", cwd=mini.root)
    assert done.returncode == 2 and "Invalid value" in done.stderr
    done = nanobuild("deploy", "compose", "--base-image", "a b", "--out", "d2", cwd=mini.root)
    assert (
        done.returncode == 1 and "E045 --base-image 'a b' is not an image reference" in done.stderr
    )
    assert not (mini.root / "d2").exists()
    (mini.root / "notes.txt").write_text("mine")
    done = nanobuild("deploy", "compose", "--out", "notes.txt", cwd=mini.root)
    assert done.returncode == 1 and "E045 --out" in done.stderr
    assert "notes.txt is a file, not a folder" in done.stderr
    assert (mini.root / "notes.txt").read_text() == "mine"


def test_a_workspace_that_fails_check_is_not_deployed(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depends = ["users", "user"]')
    done = nanobuild("deploy", "compose", cwd=mini.root)
    assert done.returncode == 1 and "E101" in done.stderr and "not deploying" in done.stderr
    assert not (mini.root / "deploy").exists()


def test_the_cli_writes_the_default_folder(mini: Sample) -> None:
    done = nanobuild("deploy", "compose", cwd=mini.root)
    assert done.returncode == 0, done.stderr
    assert "wrote 3 files into deploy: .gitignore, Containerfile, compose.yaml" in done.stdout
    services = yaml.safe_load((mini.root / "deploy/compose.yaml").read_text())["services"]
    assert sorted(services) == ["orders", "users"]  # each service alone
    assert services["orders"]["ports"] == ["8000:8000"]  # the group no other group calls
