"""Test-only helpers for servers that need credentials: nkeys, hand-made NATS JWTs (operator
mode with a creds file), TLS certificates (``trustme``), and a nats-server started from a
config file with its monitoring port on, to count the connections it saw.

Nothing secret is kept: every key and certificate is made afresh by the test that uses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import nkeys  # type: ignore[import-untyped]
import trustme

from naq.server import EmbeddedServer, free_port

_JWT_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


# -- nkeys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NKey:
    """An nkey: its seed (``S...``, secret) and public key (``U...``, ``A...``, ``O...``)."""

    seed: bytes
    public: str

    def sign(self, data: bytes) -> bytes:
        """The raw ed25519 signature of ``data``."""
        return bytes(nkeys.from_seed(bytearray(self.seed)).sign(data))


def new_nkey(prefix: int) -> NKey:
    """A fresh nkey of the role ``prefix`` (``nkeys.PREFIX_BYTE_USER`` etc.)."""
    seed = bytes(nkeys.encode_seed(os.urandom(32), prefix))
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    return NKey(seed, public)


def new_user_nkey() -> NKey:
    """A fresh user nkey (seed ``SU...``, public ``U...``)."""
    return new_nkey(nkeys.PREFIX_BYTE_USER)


# -- JWTs (NATS JWT v2) -----------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(issuer: NKey, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT for ``subject`` issued and signed by ``issuer`` (its ``jti`` is the
    base32 SHA-512/256 of the claims without it, as the Go library makes it)."""
    claims: dict[str, Any] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.new("sha512_256", json.dumps(claims).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    signed = f"{_b64(json.dumps(_JWT_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


_UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}
_JETSTREAM_UNLIMITED = {
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
}


@dataclass(frozen=True)
class OperatorSetup:
    """An operator, its system account and one account with JetStream, as JWTs."""

    operator_jwt: str
    system_account: str
    account: NKey
    #: account public key -> account JWT, for ``resolver_preload``
    account_jwts: dict[str, str]

    def server_config(self) -> str:
        """A nats-server config running in operator mode with a memory resolver."""
        preload = "\n".join(f"  {key}: {jwt}" for key, jwt in self.account_jwts.items())
        return (
            f"operator: {self.operator_jwt}\n"
            f"system_account: {self.system_account}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n{preload}\n}}\n"
        )

    def user_creds(self, name: str = "naq-user", account: NKey | None = None) -> str:
        """The text of a creds file for a new user of the account (or of ``account``,
        which the server may not know)."""
        issuer = account or self.account
        user = new_user_nkey()
        nats = {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user"}
        jwt = encode_jwt(issuer, user.public, name, nats)
        return creds_text(jwt, user.seed.decode())


def operator_setup() -> OperatorSetup:
    """A fresh operator, system account and JetStream-enabled account."""
    operator = new_nkey(nkeys.PREFIX_BYTE_OPERATOR)
    system = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    account = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    operator_jwt = encode_jwt(
        operator, operator.public, "naq-op", {"type": "operator", "system_account": system.public}
    )
    system_jwt = encode_jwt(
        operator, system.public, "SYS", {"type": "account", "limits": dict(_UNLIMITED)}
    )
    account_jwt = encode_jwt(
        operator,
        account.public,
        "NAQ",
        {"type": "account", "limits": {**_UNLIMITED, **_JETSTREAM_UNLIMITED}},
    )
    return OperatorSetup(
        operator_jwt=operator_jwt,
        system_account=system.public,
        account=account,
        account_jwts={system.public: system_jwt, account.public: account_jwt},
    )


def creds_text(jwt: str, seed: str) -> str:
    """A creds file as ``nsc`` writes it: the user JWT and the user's nkey seed."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n"
    )


# -- TLS --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    """PEM files made for one test module: a CA, a server certificate for 127.0.0.1 signed
    by it, a client certificate signed by it, and another CA with a client certificate of
    its own (for "not trusted", both ways)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a fresh CA, server and client certificates to ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("naq-client@example.com")
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_ca=directory / "other-ca.pem",
        other_client_cert=directory / "other-client.pem",
        other_client_key=directory / "other-client-key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    other = trustme.CA()
    other_client = other.issue_cert("stranger@example.com")
    other.cert_pem.write_to_path(str(files.other_ca))
    other_client.cert_chain_pems[0].write_to_path(str(files.other_client_cert))
    other_client.private_key_pem.write_to_path(str(files.other_client_key))
    return files


def tls_block(files: TlsFiles, *, verify: bool) -> str:
    """The server's ``tls {}`` config block (``verify``: client certificates required)."""
    return (
        "tls {\n"
        f'  cert_file: "{files.server_cert}"\n'
        f'  key_file: "{files.server_key}"\n'
        f'  ca_file: "{files.ca}"\n'
        f"  verify: {'true' if verify else 'false'}\n"
        "  timeout: 2\n"
        "}\n"
    )


# -- a server from a config file ----------------------------------------------------------------
class ConfiguredServer:
    """A JetStream nats-server run with a config file, logging to a file, with its
    monitoring port on (:meth:`total_connections` counts every connection it accepted)."""

    def __init__(self, directory: Path, config: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "server.conf"
        self.config_path.write_text(config)
        self.log_path = directory / "server.log"
        self.monitor_port = free_port()
        self.server = EmbeddedServer(
            extra_args=[
                "-c",
                str(self.config_path),
                "-m",
                str(self.monitor_port),
                "-l",
                str(self.log_path),
            ]
        )

    @property
    def address(self) -> str:
        """``host:port`` of the client port."""
        return f"{self.server.host}:{self.server.port}"

    def url(self, scheme: str = "nats", auth: str = "") -> str:
        """The client URL, with ``auth`` (``user:pass`` or a token) if given."""
        at = f"{auth}@" if auth else ""
        return f"{scheme}://{at}{self.address}"

    def total_connections(self) -> int:
        """Connections the server accepted since it started (refused logins included)."""
        url = f"http://127.0.0.1:{self.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(json.load(answer)["total_connections"])

    def log(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ConfiguredServer:
        try:
            self.server.start()
        except Exception as exc:
            raise RuntimeError(f"{exc}; server log: {self.log()[-2000:]}") from exc
        self._wait_for_the_start_probe()
        return self

    def _wait_for_the_start_probe(self) -> None:
        """Wait until the server counted the connection ``EmbeddedServer.start`` made to see
        it up (else a test's first count may include it)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                if self.total_connections() >= 1:
                    return
            except OSError:
                pass  # the monitoring port is not open yet
            if time.monotonic() > deadline:
                raise RuntimeError("the server never counted its start probe")
            time.sleep(0.01)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.close()
