"""Placement groups: ``[placement.<group>]`` and ``[deploy]`` in nano.toml, judged by
``check`` (E036-E044), and ``serve --group`` in the real binary, three groups of the
boutique as three processes on loopback, an order placed through the front door."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanobuild.errors import WorkspaceError
from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.settings import VARIABLES, Settings
from nanobuild.runtime.spec import DISCOVERY_VARIABLE, SECRET_FILE_VARIABLE, SECRET_VARIABLE
from tests.conftest import REPO, Sample
from tests.servers import Binary, Cluster, build_binary, free_port, order, start

SECRET = "placement-secret-THn04mfAha-zsl6LA4Jb"


def place(sample: Sample, text: str) -> None:
    """Add ``text`` (placement and deploy tables) to the end of the sample's nano.toml."""
    path = sample.root / "nano.toml"
    path.write_text(path.read_text() + "\n" + text)


def test_a_placement_that_fits_passes(mini: Sample) -> None:
    place(mini, '[placement.web]\nservices = ["orders", "users"]\nreplicas = 3\n')
    place(mini, 'resources = { cpu = "500m", memory = "256Mi" }\n')
    place(mini, '[deploy]\ndiscovery = "tcp://{group}.shop.internal:9100"\nfront = "web"\n')
    assert mini.check() == []
    group = mini.load().groups["web"]
    assert (group.services, group.replicas, group.cpu, group.memory) == (
        ("orders", "users"),
        3,
        "500m",
        "256Mi",
    )


def test_an_unknown_service(mini: Sample) -> None:
    place(mini, '[placement.web]\nservices = ["orders", "userz"]\n')
    d = mini.only("E036")
    assert d.line == 20 and d.hint == "did you mean `users`?"
    assert "`placement.web.services` names userz, which is not a service" in d.message


def test_a_service_in_two_groups(mini: Sample) -> None:
    place(mini, '[placement.web]\nservices = ["orders"]\n[placement.api]\nservices = ["orders"]\n')
    d = mini.only("E037")
    assert d.message == "orders is placed in two groups, web and api" and d.line == 22


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("replicas = 0", "`placement.web.replicas` = 0: a group runs at least 1 replica"),
        ("internal_port = 70000", "`placement.web.internal_port` = 70000 is not a TCP port"),
    ],
)
def test_replicas_and_ports(mini: Sample, key: str, message: str) -> None:
    place(mini, f'[placement.web]\nservices = ["orders"]\n{key}\n')
    d = mini.only("E038")
    assert (d.message, d.line) == (message, 21)


@pytest.mark.parametrize("name", ["Web", "web_1", "1web", "web-", "w" * 59])
def test_a_group_name_that_is_not_a_dns_label(mini: Sample, name: str) -> None:
    place(mini, f'[placement.{name}]\nservices = ["orders"]\n')
    d = mini.only("E039")
    assert f"placement group name {name!r} is not a DNS label" in d.message and d.line == 19


@pytest.mark.parametrize(
    ("resources", "field"),
    [('{ cpu = "lots" }', "cpu"), ('{ cpu = "0" }', "cpu"), ('{ memory = "256MB" }', "memory")],
)
def test_resources_that_cannot_be_used(mini: Sample, resources: str, field: str) -> None:
    place(mini, f'[placement.web]\nservices = ["orders"]\nresources = {resources}\n')
    d = mini.only("E040")
    assert f"`placement.web.resources.{field}`" in d.message
    assert "is not a positive Kubernetes quantity" in d.message


def test_an_unknown_resource_is_an_unknown_key(mini: Sample) -> None:
    place(mini, '[placement.web]\nservices = ["orders"]\nresources = { gpu = "1" }\n')
    with pytest.raises(WorkspaceError, match="E002") as caught:
        mini.load()
    assert "unknown key `placement.web.resources.gpu`" in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("tcp://orders:9100", "has no {group} (nor {port})"),
        ("tcp://{grp}:9100", "holds a brace that is not {group} or {port}"),
        ("http://{group}:9100", "is not tcp://HOST:PORT"),
        ("tcp://{group}:0", "names no port 1-65535"),
    ],
)
def test_a_discovery_pattern_that_cannot_be_used(mini: Sample, pattern: str, why: str) -> None:
    place(mini, f'[deploy]\ndiscovery = "{pattern}"\n')
    d = mini.only("E041")
    assert d.message.startswith(f"`deploy.discovery` = {pattern!r} {why}") and d.line == 20


def test_a_pattern_of_ports_alone_needs_a_port_per_group(mini: Sample) -> None:
    place(mini, '[deploy]\ndiscovery = "tcp://127.0.0.1:{port}"\n')
    d = mini.only("E041")  # orders and users each form a group, both on port 9100
    assert "gives groups users and orders one address: both have internal_port 9100" in d.message
    place(mini, '[placement.api]\nservices = ["users"]\ninternal_port = 9101\n')
    assert mini.check() == []


def test_an_empty_group(mini: Sample) -> None:
    place(mini, "[placement.web]\nservices = []\n")
    assert (
        mini.only("E042").message
        == "`placement.web.services` is empty: a group runs at least one service"
    )


def test_a_group_named_like_a_services_own_group(mini: Sample) -> None:
    place(mini, '[placement.users]\nservices = ["orders"]\n')
    d = mini.only("E042")
    assert "placement group users is named like the group users forms alone" in d.message


def test_groups_calling_each_other_in_a_cycle(mini: Sample) -> None:
    mini.write("services/stock/stock/__init__.py", "")
    mini.write(
        "services/stock/stock/kernel.py",
        "from nanobuild.runtime import Contract\n\n\nclass Count(Contract[int], frozen=True):\n    sku: str\n",
    )
    mini.write(
        "services/stock/stock/handlers.py",
        "from nanobuild.runtime import handler\n\nfrom .kernel import Count\n\n\n"
        "@handler\nasync def count(req: Count) -> int:\n    return 1\n",
    )
    mini.edit("nano.toml", 'public = ["GetUser"]', 'public = ["GetUser"]\ndepends = ["stock"]')
    place(mini, '[services.stock]\npath = "services/stock"\n')
    assert mini.check() == []
    place(mini, '[placement.shop]\nservices = ["orders", "stock"]\n')
    d = mini.only("E043")  # shop (orders) calls users, which calls shop (stock)
    assert d.message == "placement groups call each other in a cycle: shop -> users -> shop"


def test_a_front_door_that_is_no_group(mini: Sample) -> None:
    place(mini, '[deploy]\nfront = "order"\n')
    d = mini.only("E044")
    assert d.message == "`deploy.front` = 'order' names no placement group"
    assert d.hint == "did you mean `orders`?"


def test_a_front_door_other_groups_call(mini: Sample) -> None:
    place(mini, '[deploy]\nfront = "users"\n')
    d = mini.only("E044")
    assert "`deploy.front` = 'users' is called by the group orders" in d.message


# -- the settings serve --group and the deployments read


def test_the_deployments_variables_are_the_settings_own() -> None:
    names = {v.name for v in VARIABLES}
    assert {SECRET_VARIABLE, SECRET_FILE_VARIABLE, DISCOVERY_VARIABLE} <= names


def test_the_secret_from_a_file(tmp_path: Path) -> None:
    file = tmp_path / "nano_secret"
    file.write_text(SECRET + "\n")
    assert Settings.from_env({SECRET_FILE_VARIABLE: str(file)}).secret == SECRET
    for environ, message in [
        ({SECRET_FILE_VARIABLE: str(file), SECRET_VARIABLE: SECRET}, "both NANO_SECRET and"),
        ({SECRET_FILE_VARIABLE: str(tmp_path / "none")}, "names no file"),
        ({SECRET_FILE_VARIABLE: str(tmp_path)}, "names no file"),
    ]:
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(environ)
    file.write_text("\n")
    with pytest.raises(SettingsError, match="is empty: write the secret into it"):
        Settings.from_env({SECRET_FILE_VARIABLE: str(file)})
    file.write_text("CHANGE-ME")  # the Kubernetes placeholder is refused
    with pytest.raises(SettingsError, match="is too weak"):
        Settings.from_env({SECRET_FILE_VARIABLE: str(file)})


def test_a_discovery_variable_that_cannot_be_used() -> None:
    assert Settings.from_env({DISCOVERY_VARIABLE: "tcp://{group}:9100"}).discovery
    with pytest.raises(SettingsError, match=r"NANO_DISCOVERY='tcp://x:1' has no \{group\}"):
        Settings.from_env({DISCOVERY_VARIABLE: "tcp://x:1"})


# -- serve --group, in the real binary


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Binary, dict[str, int]]:
    """The boutique bundled with three placement groups, each on an internal port of
    its own, so that ``tcp://127.0.0.1:{port}`` finds them on loopback."""
    tmp = tmp_path_factory.mktemp("grouped")
    ports = {"front": free_port(), "catalog": free_port(), "basket": free_port()}
    ws = tmp / "boutique"
    shutil.copytree(REPO / "services", ws / "services")
    shutil.copytree(REPO / "libs", ws / "libs")
    shutil.copytree(REPO / "frontend", ws / "frontend")
    shutil.copy2(REPO / "nano.lock", ws / "nano.lock")
    placement = f"""
[placement.front]
services = ["checkout", "payment", "shipping", "email"]
internal_port = {ports["front"]}

[placement.catalog]
services = ["catalog", "recommendation", "ad"]
internal_port = {ports["catalog"]}

[placement.basket]
services = ["cart", "currency"]
internal_port = {ports["basket"]}
"""
    # this placement in place of the example's own (the last tables of its nano.toml)
    toml = (REPO / "nano.toml").read_text().split("\n[placement.", 1)[0]
    (ws / "nano.toml").write_text(toml + placement)
    return build_binary(ws, tmp / "build"), ports


def run(binary: Binary, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        binary.command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=binary.pyz.parent,
        env={"PATH": "/usr/bin:/bin", **binary.env, "NANO_SECRET": SECRET, **env},
    )


@pytest.fixture
def groups(grouped: tuple[Binary, dict[str, int]], tmp_path: Path) -> Iterator[Cluster]:
    """The three groups as three processes, the ones called first; the front last."""
    binary, _ = grouped
    env = {**binary.env, "NANO_SECRET": SECRET, DISCOVERY_VARIABLE: "tcp://127.0.0.1:{port}"}
    servers = []
    try:
        for name in ("catalog", "basket", "front"):
            command = binary.command("serve", "--group", name, "--port", "0")
            servers.append(start(command, tmp_path / f"{name}.log", env, cwd=binary.pyz.parent))
        yield Cluster(servers)
    finally:
        Cluster(servers).stop()


def test_three_groups_place_an_order_through_the_front_door(
    groups: Cluster, grouped: tuple[Binary, dict[str, int]]
) -> None:
    _, ports = grouped
    catalog, basket, front = groups.servers
    assert catalog.internal == f"tcp://127.0.0.1:{ports['catalog']}"  # its group's own port
    assert basket.internal == f"tcp://127.0.0.1:{ports['basket']}"
    health = front.http.get("/healthz").json()
    assert health["remote"] == ["ad", "cart", "catalog", "currency", "recommendation"]
    product = front.call("catalog", "GetProduct", {"id": "OLJCESPC7Z"})
    assert product.status_code == 200, product.text
    added = front.call(
        "cart", "AddItem", {"user_id": "ada", "item": {"product_id": "OLJCESPC7Z", "quantity": 2}}
    )
    assert added.status_code == 200, added.text
    placed = front.call("checkout", "PlaceOrder", order("ada"))
    assert placed.status_code == 200, placed.text
    assert placed.json()["items"][0]["product_id"] == "OLJCESPC7Z"
    # the cart emptied by the checkout, in another process
    assert basket.call("cart", "GetCart", {"user_id": "ada"}).json()["items"] == []


def test_a_group_calls_only_what_it_needs(groups: Cluster) -> None:
    catalog = groups.servers[0]  # recommendation calls catalog, in its own group
    assert catalog.http.get("/healthz").json()["remote"] == []


def test_group_refusals_are_one_line(grouped: tuple[Binary, dict[str, int]]) -> None:
    binary, _ = grouped
    for args, env, message in [
        (
            ["--group", "fornt"],
            {},
            "--group fornt: boutique has no such placement group (did you mean front?)",
        ),
        (["--group", "front", "--only", "cart"], {}, "--group and --only both say what runs here"),
        (
            ["--group", "front"],
            {DISCOVERY_VARIABLE: "tcp://h:1"},
            "NANO_DISCOVERY='tcp://h:1' has no {group}",
        ),
    ]:
        done = run(binary, "serve", *args, **env)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    shown = run(binary, "services", "--group", "catalog")
    assert shown.returncode == 0
    lines = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines()[1:]}
    assert lines["catalog"] == "local" and lines["ad"] == "local" and lines["cart"] == "-"
