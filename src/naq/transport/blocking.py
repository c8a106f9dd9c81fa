"""A small blocking NATS client for publishing from synchronous code (``enqueue_sync``).

The ``*_sync`` helpers otherwise run naq's async code on a private loop thread. For the
call web apps make on every request, ``enqueue_sync``, the hop to that thread and back
(two thread wake-ups and GIL hand-overs) plus asyncio's own overhead cost more than the
publish itself. A blocking socket owned by the calling thread does one ``sendall`` and
reads the acknowledgements back: the measured round trip is ~60 µs against ~240 µs for
nats-py's awaited ``js.publish`` (docs/design.md).

Only what that needs is here: connect (user/password or token from the URL, TLS; a server
that does not offer TLS when it was asked for gets nothing, not even CONNECT), publish
with a reply subject, read replies, answer server pings. One connection per thread and
server list, re-opened after a fork, after an error, or after a long idle spell.
Credentials files (JWT + nkey) are not supported here; :func:`supports` says when to use
the loop-thread path instead.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import NaqConnectionError, NaqTimeoutError
from ..settings import Settings, redact_url
from .connect_failures import TlsRequiredError, connect_failure, describe_failure, tls_not_required
from .credentials import tls_context, wants_tls
from .names import check_size, check_subject
from .refusals import permission_denied, refused_subject

#: A connection unused for this long is re-opened before use: the server may have dropped
#: it as stale (nobody answered its pings while the thread did other things).
IDLE_REOPEN = 60.0
_CONNECT_TIMEOUT = 2.0


class PublishReply:
    """The server's answer to one publish: a PubAck (JSON) or a status like ``503``."""

    __slots__ = ("data", "status")

    def __init__(self, status: str, data: bytes) -> None:
        self.status = status
        self.data = data

    def error(self) -> dict[str, Any] | None:
        """The JetStream API error in the reply, if any (``{"code", "err_code", ...}``)."""
        if self.status == "503":
            return {"code": 503, "err_code": 0, "description": "no responders (stream missing)"}
        if b'"error"' not in self.data:
            return None
        try:
            error = json.loads(self.data).get("error")
        except ValueError:
            return {"code": 0, "err_code": 0, "description": self.data.decode(errors="replace")}
        return error if isinstance(error, dict) else None


def supports(settings: Settings) -> bool:
    """True when :class:`BlockingClient` can connect with these settings."""
    return not (settings.creds_file or settings.nkey_file)


class _Refused(Exception):
    """The server refused a publish for lack of permission (``subject`` in lower case)."""

    def __init__(self, subject: str) -> None:
        super().__init__(subject)
        self.subject = subject


class BlockingClient:
    """One blocking NATS connection (not thread-safe: one per thread, see :func:`for_thread`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tls: ssl.SSLContext | None = None
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._inbox = ""
        self._token = 0
        self._last_used = 0.0
        self._pid = os.getpid()
        self._max_payload = 1024 * 1024

    # -- connection -------------------------------------------------------------------------
    def _open(self) -> None:
        if self._tls is None:
            self._tls = tls_context(self._settings)  # once: it reads certificate files
        failure: BaseException | None = None
        for url in self._settings.nats_urls:
            try:
                self._open_url(url)
                return
            except (OSError, ValueError, NaqConnectionError, TlsRequiredError) as exc:
                self.close()
                failure = exc
        raise connect_failure(redact_url(self._settings.nats_url), failure)

    def _open_url(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        sock = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        info = self._read_info(sock)
        if not info.get("tls_required") and wants_tls(self._settings):
            # asked for TLS, offered none: send nothing (no CONNECT, no credentials)
            raise TlsRequiredError(tls_not_required(redact_url(url)))
        self._max_payload = int(info.get("max_payload") or self._max_payload)
        if self._tls is not None or parts.scheme == "tls" or info.get("tls_required"):
            context = self._tls or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)
            self._sock = sock
        self._reader = sock.makefile("rb")
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "lang": "python3",
            "version": "naq",
            "name": "naq-sync",
            "protocol": 1,
            "headers": True,
            "no_responders": True,
            "tls_required": isinstance(sock, ssl.SSLSocket),
        }
        if parts.username and parts.password is not None:
            options["user"], options["pass"] = unquote(parts.username), unquote(parts.password)
        elif parts.username:
            options["auth_token"] = unquote(parts.username)
        self._inbox = f"{self._settings.inbox_prefix}.{uuid.uuid4().hex}"
        sock.sendall(
            b"CONNECT " + json.dumps(options).encode() + b"\r\n"
            b"SUB " + self._inbox.encode() + b".* 1\r\nPING\r\n"
        )
        while True:  # until the server answers the PING (or refuses the login)
            line = self._reader.readline()
            if not line:
                raise NaqConnectionError("NATS closed the connection during connect")
            if line.startswith(b"PONG"):
                break
            if line.startswith(b"-ERR"):
                raise NaqConnectionError(line[5:].strip().decode(errors="replace").strip("'"))
        self._last_used = time.monotonic()

    @staticmethod
    def _read_info(sock: socket.socket) -> dict[str, Any]:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(1)  # byte by byte: nothing after INFO may be consumed pre-TLS
            if not chunk:
                raise NaqConnectionError("NATS closed the connection before INFO")
            data += chunk
        if not data.startswith(b"INFO "):
            raise NaqConnectionError(f"unexpected greeting from NATS: {data[:40]!r}")
        info = json.loads(data[5:])
        return info if isinstance(info, dict) else {}

    def close(self) -> None:
        """Close the connection (it is re-opened on next use)."""
        sock, reader, self._sock, self._reader = self._sock, self._reader, None, None
        if reader is not None:  # it holds a reference: the socket stays open until it closes
            try:
                reader.close()
            except OSError:
                pass
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __del__(self) -> None:  # a thread's client goes with the thread
        self.close()

    # -- publishing -------------------------------------------------------------------------
    def request_many(
        self, messages: Sequence[tuple[str, bytes | None, bytes]], timeout: float = 10.0
    ) -> list[PublishReply]:
        """Publish ``(subject, header_block, payload)`` messages, each with its own reply
        subject, and return the replies in order. Retries once on a fresh connection after
        a connection failure (callers publish idempotently: message ids, create-if-absent).
        """
        if os.getpid() != self._pid:  # forked: the socket belongs to the parent
            self._sock, self._reader, self._pid = None, None, os.getpid()
        if self._sock is not None and time.monotonic() - self._last_used > IDLE_REOPEN:
            self.close()
        for attempt in (1, 2):
            try:
                if self._sock is None:
                    self._open()
                return self._exchange(messages, timeout)
            except _Refused as exc:  # not retried: the server would refuse again
                self.close()
                sent = (m[0] for m in messages if m[0].lower() == exc.subject)
                raise permission_denied(next(sent, exc.subject)) from None
            except (OSError, EOFError) as exc:
                self.close()
                if attempt == 2:
                    shown = redact_url(self._settings.nats_url)
                    if isinstance(exc, TimeoutError):
                        raise NaqTimeoutError(
                            f"NATS at {shown} did not answer a write in time; "
                            "it may or may not be stored"
                        ) from None
                    raise NaqConnectionError(describe_failure(shown, exc)) from None
        raise AssertionError("unreachable")

    def _exchange(
        self, messages: Sequence[tuple[str, bytes | None, bytes]], timeout: float
    ) -> list[PublishReply]:
        assert self._sock is not None
        inbox = self._inbox
        tokens: list[str] = []
        out: list[bytes] = []
        for subject, header_block, payload in messages:
            check_subject(subject)
            size = len(payload) + (len(header_block) if header_block else 0)
            check_size(size, self._max_payload, f"message to {subject[:80]}")
            self._token += 1
            token = str(self._token)
            tokens.append(token)
            reply = f"{inbox}.{token}"
            if header_block:
                size = len(header_block) + len(payload)
                line = f"HPUB {subject} {reply} {len(header_block)} {size}\r\n"
                out += (line.encode(), header_block, payload, b"\r\n")
            else:
                out += (f"PUB {subject} {reply} {len(payload)}\r\n".encode(), payload, b"\r\n")
        self._sock.settimeout(timeout)
        self._sock.sendall(b"".join(out))
        wanted = set(tokens)
        replies: dict[str, PublishReply] = {}
        prefix = inbox + "."
        while wanted:
            subject, status, data = self._read_message()
            if subject.startswith(prefix):
                token = subject[len(prefix) :]
                if token in wanted:
                    wanted.discard(token)
                    replies[token] = PublishReply(status, data)
        self._last_used = time.monotonic()
        return [replies[token] for token in tokens]

    def _read_message(self) -> tuple[str, str, bytes]:
        """The next MSG/HMSG as ``(subject, status, payload)``, answering pings meanwhile."""
        reader = self._reader
        while True:
            line = reader.readline()
            if not line:
                raise EOFError("NATS closed the connection")
            if line.startswith(b"MSG "):
                fields = line.split()
                data = reader.read(int(fields[-1]) + 2)[:-2]
                return fields[1].decode(), "", data
            if line.startswith(b"HMSG "):
                fields = line.split()
                header_size, total = int(fields[-2]), int(fields[-1])
                raw = reader.read(total + 2)
                header, data = raw[:header_size], raw[header_size:total]
                status = header[9:12].decode() if header[8:9] == b" " else ""
                return fields[1].decode(), status, data
            if line.startswith(b"PING"):
                assert self._sock is not None
                self._sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                text = line[5:].strip().decode(errors="replace").strip("'")
                denied = refused_subject(text)
                if denied is not None:
                    raise _Refused(denied)
                raise OSError(f"NATS error: {text}")
            # +OK, PONG, INFO: nothing to do


_local = threading.local()


def for_thread(settings: Settings) -> BlockingClient:
    """The calling thread's client for ``settings``' servers (created on first use)."""
    clients: dict[tuple[Any, ...], BlockingClient] | None = getattr(_local, "clients", None)
    if clients is None:
        clients = _local.clients = {}
    key = settings.login
    client = clients.get(key)
    if client is None:
        client = clients[key] = BlockingClient(settings)
    return client


def close_for_thread() -> None:
    """Close the calling thread's clients; each opens again on its next use. Other threads'
    clients are left alone (a client is only ever used by its own thread)."""
    clients: dict[tuple[Any, ...], BlockingClient] = getattr(_local, "clients", None) or {}
    for client in clients.values():
        client.close()
