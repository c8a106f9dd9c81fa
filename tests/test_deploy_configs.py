"""The example deployment files under ``deploy/`` are valid and consistent: every NATS config
passes ``nats-server -t`` (with the environment variables it reads set, and certificates made
here), the systemd unit and the compose file configure what docs/deploy.md says, and every
stop timeout is longer than the worker's shutdown timeout it belongs to."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from naq.server import find_nats_server

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NATS_CONFIGS = sorted((DEPLOY / "nats").glob("*.conf"))
UNIT = DEPLOY / "systemd" / "naq-worker.service"
SCHEDULER_UNIT = DEPLOY / "systemd" / "naq-scheduler.service"
PERMISSIONS = DEPLOY / "nats" / "permissions.conf"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
#: Seconds a stop may take beyond the worker's shutdown timeout (hand-backs, closing).
MARGIN = 10.0


@pytest.fixture(scope="module")
def config_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment the NATS configs read: passwords and real certificate files."""
    certs = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    node = ca.issue_cert("nats1", "nats2", "nats3", "localhost")
    node.cert_chain_pems[0].write_to_path(str(certs / "node.pem"))
    node.private_key_pem.write_to_path(str(certs / "node-key.pem"))
    yield {
        **os.environ,
        "NAQ_ADMIN_PASSWORD": "placeholder-admin",
        "NAQ_PRODUCER_PASSWORD": "placeholder-producer",
        "NAQ_WORKER_PASSWORD": "placeholder-worker",
        "NAQ_DASHBOARD_PASSWORD": "placeholder-dashboard",
        "NAQ_LEAF_PASSWORD": "placeholder-leaf",
        "NAQ_HUB_LEAF_URL": "tls://leaf:placeholder-leaf@nats1:7422",
        "NAQ_TLS_CA": str(certs / "ca.pem"),
        "NAQ_TLS_CERT": str(certs / "node.pem"),
        "NAQ_TLS_KEY": str(certs / "node-key.pem"),
    }


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``nats-server -t -c path``: parse and check the config without starting."""
    return subprocess.run(
        [find_nats_server(), "-t", "-c", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_every_nats_config_is_there() -> None:
    names = {p.name for p in NATS_CONFIGS}
    assert {"permissions.conf", "node1.conf", "node2.conf", "node3.conf", "leaf.conf"} <= names


@pytest.mark.parametrize("path", NATS_CONFIGS, ids=lambda p: p.name)
def test_nats_config_is_valid(path: Path, config_env: dict[str, str]) -> None:
    result = check_config(path, config_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout + result.stderr


def test_a_missing_certificate_is_caught(config_env: dict[str, str], tmp_path: Path) -> None:
    """The check is real: the node config with a certificate that is not there fails."""
    env = {**config_env, "NAQ_TLS_CERT": str(tmp_path / "missing.pem")}
    result = check_config(DEPLOY / "nats" / "node1.conf", env)
    assert result.returncode != 0
    assert "missing.pem" in result.stdout + result.stderr


def test_passwords_are_read_from_the_environment() -> None:
    """No config holds a password of its own: every ``password`` is a ``$VARIABLE``."""
    for path in NATS_CONFIGS:
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            match = re.search(r"\bpassword\s*:\s*(\S+)", code)
            if match:
                assert match.group(1).startswith("$"), (path.name, line)


@pytest.mark.parametrize("node", [1, 2, 3])
def test_the_cluster_nodes_route_to_each_other(node: int) -> None:
    text = (DEPLOY / "nats" / f"node{node}.conf").read_text()
    assert re.search(rf"^server_name:\s*nats{node}\s*$", text, re.M)
    for other in (1, 2, 3):
        assert f"nats-route://nats{other}:6222" in text
    assert "store_dir" in text
    assert 'include "permissions.conf"' in text


def test_the_cluster_and_the_edge_have_their_own_jetstream_domains() -> None:
    domains = {
        name: re.findall(r"^\s*domain:\s*(\S+)", (DEPLOY / "nats" / name).read_text(), re.M)
        for name in ("node1.conf", "node2.conf", "node3.conf", "leaf.conf")
    }
    assert domains["node1.conf"] == domains["node2.conf"] == domains["node3.conf"] == ["hub"]
    assert domains["leaf.conf"] == ["edge1"]


# -- stop timeouts ------------------------------------------------------------------------------
def shutdown_timeout(command: list[str]) -> float:
    """The ``--shutdown-timeout`` of a ``naq worker`` command line (naq's default: 30)."""
    if "--shutdown-timeout" in command:
        return float(command[command.index("--shutdown-timeout") + 1])
    return 30.0


def seconds(value: str) -> float:
    """A duration like ``90``, ``90s``, ``1m30s`` in seconds."""
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(h|min|m|s|ms)?", value.strip()):
        factor = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001}.get(unit or "s", 1)
        total += float(number) * factor
    return total


def unit_settings(unit: Path = UNIT) -> dict[str, str]:
    """``Key=value`` lines of a systemd unit (the last one of a key wins, as in systemd)."""
    found: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip()
    return found


def test_the_systemd_unit_stops_the_worker_cleanly() -> None:
    unit = unit_settings()
    command = unit["ExecStart"].split()
    assert command[1] == "worker", command
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["KillMode"] == "mixed"  # SIGTERM to the worker, SIGKILL to all at the end
    assert unit["Restart"] == "on-failure"
    assert "EnvironmentFile" in unit  # secrets out of the unit
    stop = seconds(unit["TimeoutStopSec"])
    assert stop >= shutdown_timeout(command) + MARGIN, (stop, command)


def compose_file() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_the_compose_file_has_the_production_layout() -> None:
    services = compose_file()["services"]
    nats = [s for s in services if s.startswith("nats")]
    workers = [s for s in services if s.startswith("worker")]
    assert sorted(nats) == ["nats1", "nats2", "nats3"]
    assert len(workers) == 2
    assert "dashboard" in services and "scheduler" in services
    for name in nats:
        command = services[name]["command"]
        assert command == ["-c", f"/etc/nats/node{name[-1]}.conf"]
        assert services[name]["entrypoint"] == ["nats-server"]
    for name in workers:
        env = services[name]["environment"]
        assert env["NAQ_REPLICAS"] == "3"
        urls = env["NAQ_NATS_URL"].split(",")
        assert [u.rsplit("@", 1)[1] for u in urls] == ["nats1:4222", "nats2:4222", "nats3:4222"]


def test_the_compose_stop_grace_periods_outlast_the_shutdown_timeouts() -> None:
    services = compose_file()["services"]
    for name, service in services.items():
        command = service.get("command", [])
        if command[:1] != ["worker"]:
            continue
        grace = seconds(service["stop_grace_period"])
        assert service["stop_signal"] == "SIGTERM"
        assert grace >= shutdown_timeout(command) + MARGIN, (name, grace, command)


def test_the_compose_file_keeps_secrets_out() -> None:
    """Passwords and the dashboard token come from the environment (``.env``), never inline."""
    text = COMPOSE.read_text()
    for match in re.finditer(r"(PASSWORD|TOKEN)\w*:\s*(\S+)", text):
        assert match.group(2).startswith("${"), match.group(0)
    for match in re.finditer(r"tls://\w+:([^@]+)@", text):
        assert match.group(1).startswith("${"), match.group(0)


def test_the_image_runs_naq_and_stops_on_sigterm() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["naq"\]$', text, re.M)
    assert re.search(r"^USER (?!root)\w+$", text, re.M)


# -- reply inboxes: each role its own -----------------------------------------------------------
def subscribe_allowed(user: str) -> list[str]:
    """The subjects ``user`` may subscribe to in permissions.conf (quoted entries of its
    ``subscribe`` block)."""
    text = PERMISSIONS.read_text()
    block = text[text.index(f"user: {user}\n") :]
    block = block[block.index("subscribe:") :]
    block = block[: block.index("}")]
    return re.findall(r'"([^"]+)"', block)


@pytest.mark.parametrize("user", ["admin", "producer", "worker", "dashboard"])
def test_each_user_may_receive_replies_on_its_own_inbox_only(user: str) -> None:
    inboxes = [s for s in subscribe_allowed(user) if s.startswith("_INBOX")]
    assert inboxes == [f"_INBOX_{user}.>"], inboxes
    assert not any(s in (">", "_INBOX.>") for s in subscribe_allowed(user))


@pytest.mark.parametrize("unit", [UNIT, SCHEDULER_UNIT], ids=lambda p: p.name)
def test_the_systemd_units_use_the_worker_inbox(unit: Path) -> None:
    assert unit_settings(unit)["Environment"] == "NAQ_NATS_INBOX_PREFIX=_INBOX_worker"


def test_every_compose_client_uses_the_inbox_of_its_user() -> None:
    services = compose_file()["services"]
    clients = {
        n: s["environment"]
        for n, s in services.items()
        if "NAQ_NATS_URL" in s.get("environment", {})
    }
    assert {"worker1", "worker2", "scheduler", "dashboard"} <= set(clients)
    for name, env in clients.items():
        users = {u.split("://", 1)[1].split(":", 1)[0] for u in env["NAQ_NATS_URL"].split(",")}
        assert len(users) == 1, (name, users)
        assert env.get("NAQ_NATS_INBOX_PREFIX") == f"_INBOX_{users.pop()}", name
