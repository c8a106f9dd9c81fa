"""A JetStream cluster of ``nats-server`` processes on one machine (tests, development), and
the command-line flags that make one server a node of a cluster (``naq server``).

Each node of a :class:`NatsCluster` is an :class:`~naq.server.EmbeddedServer` with its own
store, client port, cluster (route) port and monitoring port, a server name ``n1``, ``n2``,
... and routes to every other node. Leaders are read from each node's monitoring endpoint
(``/jsz``), so nothing here needs a NATS client.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .errors import ConfigurationError, NaqException
from .server import EmbeddedServer, free_port, server_command

T = TypeVar("T")

#: The cluster name used when none is given.
DEFAULT_CLUSTER_NAME = "naq"


def cluster_args(
    name: str,
    cluster_url: str,
    routes: list[str],
    cluster_name: str = DEFAULT_CLUSTER_NAME,
) -> list[str]:
    """The ``nats-server`` flags that make a server node ``name`` of a JetStream cluster:
    listening for routes on ``cluster_url`` (e.g. ``nats://0.0.0.0:6222``) and connecting
    to the other nodes' ``routes``."""
    if not name.strip():
        raise ConfigurationError("a cluster node needs a server name (e.g. --name n1)")
    if not cluster_url.startswith("nats://"):
        raise ConfigurationError(
            f"cluster URL {cluster_url!r} must look like nats://<host>:<port>, "
            "e.g. nats://0.0.0.0:6222"
        )
    for route in routes:
        if not route.startswith("nats://"):
            raise ConfigurationError(
                f"route {route!r} must look like nats://<host>:<cluster port>, "
                "e.g. nats://10.0.0.2:6222"
            )
    args = ["--server_name", name, "--cluster_name", cluster_name, "--cluster", cluster_url]
    if routes:
        args += ["--routes", ",".join(routes)]
    return args


class ClusterNode(EmbeddedServer):
    """One node of a :class:`NatsCluster`: an embedded server with a name, a route port and
    a monitoring port."""

    def __init__(
        self,
        name: str,
        store_dir: Path,
        host: str,
        cluster_port: int,
        routes: list[str],
        cluster_name: str,
    ) -> None:
        self.name = name
        self.cluster_port = cluster_port
        self.monitor_port = free_port(host)
        cluster_url = f"nats://{host}:{cluster_port}"
        extra = [
            *cluster_args(name, cluster_url, routes, cluster_name),
            "-m",
            str(self.monitor_port),
        ]
        super().__init__(store_dir=store_dir, host=host, extra_args=extra)

    @property
    def running(self) -> bool:
        """True while the node's process is alive."""
        return self.process is not None and self.process.poll() is None

    def monitor(self, endpoint: str, timeout: float = 2.0) -> Any:
        """The decoded JSON of monitoring ``endpoint`` (e.g. ``"jsz?streams=true"``)."""
        url = f"http://{self.host}:{self.monitor_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return json.loads(reply.read())


class NatsCluster:
    """``size`` JetStream servers on ``host`` routed to each other (a cluster named
    ``cluster_name``), each with a store under ``store_dir`` (a temporary directory unless
    given). Use as a context manager; nodes are numbered from 1 (``n1`` is ``node(1)``)."""

    def __init__(
        self,
        size: int = 3,
        host: str = "127.0.0.1",
        store_dir: Path | str | None = None,
        cluster_name: str = DEFAULT_CLUSTER_NAME,
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"a cluster needs at least 1 node, got size={size!r}")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="naq-cluster-")
            store_dir = self._tmp.name
        base = Path(store_dir)
        cluster_ports = [free_port(host) for _ in range(size)]
        self.nodes: list[ClusterNode] = []
        for n, port in enumerate(cluster_ports, start=1):
            routes = [f"nats://{host}:{p}" for p in cluster_ports if p != port]
            node = ClusterNode(f"n{n}", base / f"n{n}", host, port, routes, cluster_name)
            self.nodes.append(node)

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (for ``NAQ_NATS_URL``)."""
        return ",".join(self.urls)

    def node(self, number: int) -> ClusterNode:
        """Node ``number`` (1 to ``size``; its server name is ``n<number>``)."""
        if not 1 <= number <= len(self.nodes):
            raise ConfigurationError(f"no node {number}: nodes are 1..{len(self.nodes)}")
        return self.nodes[number - 1]

    def number_of(self, name: str) -> int:
        """The number of the node whose server name is ``name``."""
        for n, node in enumerate(self.nodes, start=1):
            if node.name == name:
                return n
        raise NaqException(f"no node named {name!r} in this cluster")

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Start every node, then wait until the cluster has a JetStream meta leader that
        sees every node as a current peer (before that, a stream with as many replicas as
        nodes cannot be placed yet)."""
        for node in self.nodes:
            if not node.running:
                node.start(timeout)
        self.wait_meta_leader(timeout)
        _wait(self._leader_sees_every_node, timeout, "a meta leader seeing every node")
        return self

    def kill(self, number: int) -> None:
        """SIGKILL node ``number`` (no goodbye to the others: a crash)."""
        self.node(number).stop(kill=True)

    def stop_node(self, number: int) -> None:
        """Stop node ``number`` gracefully (SIGTERM: it hands over its leaderships)."""
        self.node(number).stop()

    def restart(self, number: int, timeout: float = 30.0) -> None:
        """Start node ``number`` again (same ports and store) if it is not running."""
        node = self.node(number)
        if not node.running:
            node.start(timeout)

    def close(self) -> None:
        """Stop every node and remove a temporary store."""
        for node in self.nodes:
            node.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- leaders ---------------------------------------------------------------------------
    def _jsz(self, endpoint: str) -> list[Any]:
        """``endpoint`` of every running node that answers."""
        found = []
        for node in self.nodes:
            if not node.running:
                continue
            try:
                found.append(node.monitor(endpoint))
            except (OSError, ValueError, urllib.error.URLError):
                continue
        return found

    def meta_leader(self) -> str | None:
        """The server name of the JetStream meta leader, or ``None`` while there is none."""
        alive = {node.name for node in self.nodes if node.running}
        for info in self._jsz("jsz"):
            leader = (info.get("meta_cluster") or {}).get("leader")
            if leader in alive:
                return str(leader)
        return None

    def _leader_sees_every_node(self) -> bool:
        """Whether the meta leader, by its own account, has every other running node as a
        current peer."""
        running = [node for node in self.nodes if node.running]
        for node in running:
            try:
                meta = node.monitor("jsz").get("meta_cluster") or {}
            except (OSError, ValueError, urllib.error.URLError):
                continue
            if meta.get("leader") != node.name:
                continue
            current = {r.get("name") for r in meta.get("replicas") or [] if r.get("current")}
            return all(other.name in current for other in running if other is not node)
        return False

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Wait until the cluster has a JetStream meta leader; returns its server name."""
        return _wait(self.meta_leader, timeout, "a JetStream meta leader")

    def stream_leader(self, stream: str) -> int | None:
        """The number of the node leading ``stream``, or ``None`` (no such stream, or no
        leader right now)."""
        alive = {node.name for node in self.nodes if node.running}
        for info in self._jsz("jsz?streams=true"):
            for account in info.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") != stream:
                        continue
                    leader = (detail.get("cluster") or {}).get("leader")
                    if leader in alive:
                        return self.number_of(str(leader))
        return None

    def bucket_leader(self, bucket: str) -> int | None:
        """The number of the node leading key-value ``bucket`` (its stream ``KV_<bucket>``)."""
        return self.stream_leader(f"KV_{bucket}")

    def wait_stream_leader(self, stream: str, timeout: float = 30.0, other_than: int = 0) -> int:
        """Wait until ``stream`` has a leader (other than node ``other_than``); its number."""

        def check() -> int | None:
            leader = self.stream_leader(stream)
            return leader if leader is not None and leader != other_than else None

        return _wait(check, timeout, f"a leader of stream {stream}")


def _wait(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise NaqException(f"the cluster has no {what} after {timeout} s")
        time.sleep(0.05)


def run_cluster_foreground(size: int, first_port: int, store_dir: Path, host: str) -> int:
    """Run a local ``size``-node cluster (client ports ``first_port``, ``first_port + 1``,
    ...) in the foreground until SIGINT/SIGTERM (``naq server --cluster-nodes``)."""
    if size < 1:
        raise ConfigurationError(f"--cluster-nodes must be >= 1, got {size}")
    client_ports = [first_port + n for n in range(size)]
    cluster_ports = [first_port + 2000 + n for n in range(size)]  # 4222 -> 6222, as NATS does
    procs: list[subprocess.Popen[bytes]] = []
    for n in range(size):
        name = f"n{n + 1}"
        routes = [f"nats://{host}:{p}" for p in cluster_ports if p != cluster_ports[n]]
        flags = cluster_args(name, f"nats://{host}:{cluster_ports[n]}", routes)
        store = store_dir / name
        store.mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen(server_command(client_ports[n], store, host, flags)))

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [proc.wait() for proc in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bad = [code for code in codes if code not in (0, -signal.SIGTERM)]
    return bad[0] if bad else 0
