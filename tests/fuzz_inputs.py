"""Hostile job messages for the fuzz tests: a seeded mutation engine and a checker.

Shared by the hypothesis fuzz tests (``tests/test_fuzz.py``) and the atheris harness
(``tests/fuzz_atheris.py``). Everything here is pure: messages are built from a
``random.Random`` (so a failing input can be rebuilt from its seed) and checked against
:func:`naq.worker.decide.decide` without a server.

A message is ``(payload, headers)``. The payloads are valid envelopes, envelopes with hostile
field values, mutations of valid envelopes (bit flips, truncation, spliced bytes, swapped
fields, repeated keys, function paths pushed toward forbidden ones), and random bytes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from naq.functions import TASK_REGISTRY
from naq.worker.decide import Go, Refuse

#: Every kind of refusal :func:`decide` may answer with.
REFUSAL_KINDS = frozenset(
    {"undecodable", "invalid", "bad_signature", "refused", "function_not_found"}
)

#: The functions the fuzzed messages may run (``tests.hostile_jobs``; harmless).
RUNNABLE = ("tests.hostile_jobs:noop", "tests.hostile_jobs:echo")

#: Function paths no worker may run: the standard library, naq's own code (also reached
#: through the ``src`` folder of a src-layout checkout), dunder attributes, odd syntax.
FORBIDDEN_PATHS = (
    "os:system",
    "posix:system",
    "builtins:eval",
    "builtins:exec",
    "builtins:__import__",
    "subprocess:run",
    "subprocess:Popen",
    "subprocess:check_output",
    "shutil:rmtree",
    "importlib:import_module",
    "pickle:loads",
    "ctypes:CDLL",
    "sys:exit",
    "os.path:join",
    "naq:enqueue",
    "naq.functions:add_module_paths",
    "naq.worker.core:Worker",
    "naq.serialization:decode_call",
    "src.naq.functions:add_module_paths",
    "src.naq.serialization:decode_call",
    "src.naq:enqueue",
    "msgspec.json:decode",
    "nats:connect",
    "hypothesis:given",
    "__main__:main",
    "tests.hostile_jobs:noop.__call__",
    "tests.hostile_jobs:noop.__globals__",
    "tests.hostile_jobs:noop.__code__",
    "tests.hostile_jobs:__builtins__",
    "tests.hostile_jobs:__loader__",
    "tests.hostile_jobs:Any",
    "tests.hostile_jobs",
    "tests:hostile_jobs",
    "tests..hostile_jobs:noop",
    "..:noop",
    ".tests.hostile_jobs:noop",
    "tests.hostile_jobs:..noop",
    "tests.hostile_jobs:noop:noop",
    "tests/hostile_jobs:noop",
    "../tests/hostile_jobs:noop",
    "tests.hostile_jobs :noop",
    "tests.hostile_jobs:noop\x00",
    "tests.hostile_jobs:nοop",  # Greek omicron
    "nonexistent_module_xyz:f",
    "",
    ":",
    "a:b:c",
)

#: Pieces spliced into function paths and strings.
_PATH_PIECES = (
    ".",
    "..",
    ":",
    "__",
    "__class__",
    "__globals__",
    "__init__",
    "__builtins__",
    "src.",
    "naq.",
    "os.",
    "/",
    "\\",
    " ",
    "\x00",
    "\r\n",
    "*",
    ">",
    "ü",
    "\ud800",
)

_ODD_STRINGS = (
    "",
    " ",
    "a b",
    "x\r\ny",
    "*",
    ">",
    "a.b",
    "..",
    "ü",
    "\x00",
    "$KV.x",
    "PUB x 1\r\n",
    "../../etc",
    "z" * 300,
    "\ud800",
    "\u202e",
    "NaN",
    "1e400",
)

_ODD_NUMBERS: tuple[Any, ...] = (
    0,
    1,
    -1,
    2,
    0.5,
    -0.0,
    1e-300,
    1e300,
    -1e300,
    2**31,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    10**400,
    True,
    False,
)

#: Bare JSON literals that ``json.dumps`` never writes (text placeholders replaced later).
_LITERALS = {"@NaN@": "NaN", "@Inf@": "Infinity", "@-Inf@": "-Infinity", "@Huge@": "1e400"}

#: The fields of an envelope (and a few that are not).
FIELDS = (
    "v",
    "id",
    "fn",
    "queue",
    "args",
    "kwargs",
    "pickled",
    "max_retries",
    "retry_delay",
    "retry_strategy",
    "retry_on",
    "ignore_on",
    "timeout",
    "result_ttl",
    "depends_on",
    "allow_failure",
    "priority",
    "limits",
    "expires_at",
    "enqueued_at",
    "schedule_id",
    "headers",
    "__naq__",
    "unknown",
)

_HEADER_NAMES = (
    "Naq-Signature",
    "naq-signature",
    "NAQ-SIGNATURE",
    "Naq-Orig-Nats-Msg-Id",
    "Naq-Dlq-Kind",
    "Content-Type",
    "X-Trace",
    "traceparent",
)


@dataclass(frozen=True)
class Hostile:
    """One generated message and what it is."""

    payload: bytes
    headers: dict[str, str] | None
    label: str


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any shape: wrong types, huge numbers, nested structures, odd text."""
    choice = rng.randrange(10 if depth < 3 else 6)
    if choice == 0:
        return rng.choice(_ODD_NUMBERS)
    if choice == 1:
        return rng.choice(_ODD_STRINGS)
    if choice == 2:
        return rng.choice(list(_LITERALS))
    if choice == 3:
        return rng.choice([None, True, False, [], {}, rng.random() * 10 ** rng.randrange(-5, 15)])
    if choice == 4:
        return "".join(rng.choice((*_PATH_PIECES, "a", "1", "-", "_")) for _ in range(6))
    if choice == 5:
        return rng.randrange(-(2**70), 2**70)
    if choice == 6:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 7:
        return {rng.choice(FIELDS): hostile_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    if choice == 8:
        return {"__naq__": rng.choice(["bytes", "int", "dict", "tuple", "x"]), "v": "!!"}
    return rng.choice(FORBIDDEN_PATHS)


_INT_FIELDS = ("v", "max_retries", "priority", "result_ttl")
_FLOAT_FIELDS = ("timeout", "expires_at", "enqueued_at", "retry_delay")
_STR_FIELDS = ("id", "fn", "queue", "retry_strategy", "schedule_id", "pickled")
_LIST_FIELDS = ("retry_on", "ignore_on", "depends_on", "limits")


def typed_value(rng: random.Random, name: str) -> Any:
    """A value of the type field ``name`` holds, but an odd one (out of range, NaN, a
    wildcard, a forbidden path, a very long list): it gets past type checks."""
    if name in _INT_FIELDS:
        return rng.choice([-1, 0, 1, 9, 10, 2**31, 2**63 - 1, -(2**63), 10**18])
    if name in _FLOAT_FIELDS:
        return rng.choice([-1.0, 0, 1e-300, 3.5, 1e11, 1e300, -0.0, *_LITERALS, [1, -1], []])
    if name in _STR_FIELDS:
        if rng.random() < 0.5:
            return mutated_path(rng, rng.choice(RUNNABLE))
        return rng.choice((*_ODD_STRINGS, "exponential", "linear", "fixed", "a" * 129))
    if name in _LIST_FIELDS:
        return rng.choice([[], ["a"], [rng.choice(_ODD_STRINGS)], ["x"] * 1001, ["ok", "a b"]])
    if name == "headers":
        return {rng.choice(_ODD_STRINGS): rng.choice(_ODD_STRINGS)}
    if name == "kwargs":
        return {rng.choice(_ODD_STRINGS): hostile_value(rng)}
    if name == "args":
        return [hostile_value(rng) for _ in range(rng.randrange(4))]
    return rng.choice([True, False])


def mutated_path(rng: random.Random, path: str) -> str:
    """``path`` pushed toward a forbidden one: a forbidden path, or the path with a piece
    spliced in, cut, doubled or re-cased."""
    choice = rng.randrange(7)
    if choice == 0:
        return rng.choice(FORBIDDEN_PATHS)
    if choice == 1:
        at = rng.randrange(len(path) + 1)
        return path[:at] + rng.choice(_PATH_PIECES) + path[at:]
    if choice == 2:
        return path + "." + rng.choice(("__call__", "__globals__", "__class__", "__dict__", "x"))
    if choice == 3:
        return rng.choice(("src.", "naq.", "os.", "builtins.", "tests..")) + path
    if choice == 4:
        at = rng.randrange(len(path) + 1)
        return path[:at]
    if choice == 5:
        name = path.partition(":")[2]
        return f"{rng.choice(('os', 'subprocess', 'builtins', 'naq.worker', 'tests'))}:{name}"
    return path.swapcase() if rng.random() < 0.5 else path * 2


def valid_body(job_id: str, queue: str, fn: str = RUNNABLE[0]) -> dict[str, Any]:
    """A valid envelope (as a dict) whose run is quick and whose retries are bounded."""
    return {
        "v": 1,
        "id": job_id,
        "fn": fn,
        "queue": queue,
        "args": [1, "x", {"k": [True, None]}],
        "kwargs": {"note": "fuzz"},
        "max_retries": 1,
        "retry_delay": 0.5,
        "timeout": 30,
        "priority": 0,
        "enqueued_at": 1790000000.25,
    }


def json_text(body: Any) -> bytes:
    """JSON with the placeholders of :data:`_LITERALS` written as bare literals."""
    text = json.dumps(body, ensure_ascii=False)
    for placeholder, literal in _LITERALS.items():
        text = text.replace(f'"{placeholder}"', literal)
    return text.encode("utf-8", "surrogatepass")


def mutate_body(rng: random.Random, body: dict[str, Any], *, bounded: bool) -> dict[str, Any]:
    """A copy of ``body`` with one to four field-level changes.

    ``bounded``: keep a message that may still run quick and settled within seconds (no
    small positive timeout, no large retry count, no waiting on other jobs or limits, and a
    record kept long enough to be read), as a live worker test needs; the pure decoder tests
    use any value."""
    out = dict(body)
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        choice = rng.randrange(6)
        names = list(out) or ["id"]
        if choice == 0:
            out["fn"] = mutated_path(rng, str(out.get("fn", RUNNABLE[0])))
        elif choice == 1 and len(names) > 1:
            a, b = rng.sample(names, 2)
            out[a], out[b] = out[b], out[a]
        elif choice == 2:
            out.pop(rng.choice(names), None)
        elif choice == 3:
            name = rng.choice(FIELDS)
            out[name] = typed_value(rng, name) if rng.random() < 0.7 else hostile_value(rng)
        elif choice == 4:
            name = rng.choice(names)
            out[name] = rng.choice([[out[name]], {"v": out[name]}, str(out[name])])
        else:
            out[rng.choice(FIELDS)] = rng.choice(_ODD_STRINGS)
    if bounded:
        _bound(out)
    return out


def _bound(body: dict[str, Any]) -> None:
    """Replace the values that could keep a runnable job busy for long (see mutate_body)."""
    timeout = body.get("timeout")
    if isinstance(timeout, int | float) and 0 < timeout < 10:
        body["timeout"] = 30
    retries = body.get("max_retries")
    if type(retries) is int and retries > 2:
        body["max_retries"] = 2
    delay = body.get("retry_delay")
    if isinstance(delay, int | float) and delay > 1:
        body["retry_delay"] = 1
    if isinstance(delay, list):
        body["retry_delay"] = [0]
    ttl = body.get("result_ttl")
    if type(ttl) is int and 1 <= ttl < 3600:
        body["result_ttl"] = 3600  # the record must outlive the test that reads it
    for name in ("depends_on", "limits"):
        if name in body:
            body[name] = ["not a valid name!"]
    if body.get("pickled") is not None:
        body["pickled"] = "not base64 !!"


def mutate_bytes(rng: random.Random, payload: bytes) -> bytes:
    """``payload`` with bytes flipped, cut, spliced, repeated or its keys repeated."""
    data = bytearray(payload)
    choice = rng.randrange(6)
    if choice == 0 and data:
        for _ in range(rng.randrange(1, 5)):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
    elif choice == 1:
        del data[rng.randrange(len(data) + 1) :]
    elif choice == 2:
        at = rng.randrange(len(data) + 1)
        piece = rng.choice([b"\x00", b"\xff", b'"', b"{", b"}", b"[", b",", b"\\u0000", b"\\ud800"])
        data[at:at] = piece * rng.randrange(1, 4)
    elif choice == 3 and data:
        at, end = sorted(rng.randrange(len(data) + 1) for _ in range(2))
        data[at:at] = data[at:end]
    elif choice == 4 and data.endswith(b"}"):
        # a repeated key: whichever copy a decoder keeps must be checked like any other
        repeated = rng.choice([b'"fn": "os:system"', b'"queue": "other"', b'"id": "a b"'])
        data[-1:] = b", " + repeated + b"}"
    elif data:
        at = rng.randrange(len(data))
        data[at] = rng.randrange(256)
    return bytes(data)


def random_headers(rng: random.Random) -> dict[str, str] | None:
    """No headers, or a few with names and values a plain NATS client can send."""
    if rng.random() < 0.5:
        return None
    headers = {}
    for _ in range(rng.randrange(1, 4)):
        if rng.random() < 0.6:
            name = rng.choice(_HEADER_NAMES)
        else:
            name = "X-" + "".join(rng.choice("abcXYZ019-_.") for _ in range(rng.randrange(1, 8)))
        value = rng.choice(
            [
                "",
                "x" * rng.randrange(1, 200),
                "ü€",
                "0" * 64,
                "".join(rng.choice("0123456789abcdef") for _ in range(64)),
                "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(1, 20))),
            ]
        )
        headers[name] = value
    if rng.random() < 0.05:  # a message id another message uses too: the stream drops one
        headers["Nats-Msg-Id"] = f"fuzz-duplicate-{rng.randrange(500)}"
    return headers


def hostile_message(
    rng: random.Random,
    queue: str,
    job_id: str,
    *,
    bounded: bool = False,
    extra_paths: tuple[str, ...] = (),
) -> Hostile:
    """One hostile message (never calling anything but :data:`RUNNABLE` if it is allowed):
    a mutated valid envelope (most often), a structured envelope of random values, a
    valid-looking call of a forbidden function, or random bytes."""
    shape = rng.randrange(10)
    headers = random_headers(rng)
    if shape <= 4:
        body = valid_body(job_id, queue, rng.choice(RUNNABLE))
        if shape != 3:
            body = mutate_body(rng, body, bounded=bounded)
        payload, label = json_text(body), "mutated fields"
        if shape >= 3:
            payload = mutate_bytes(rng, payload)
            label = "mutated bytes" if shape == 3 else "mutated fields and bytes"
        return Hostile(_bounded_bytes(payload, bounded), headers, label)
    if shape <= 6:
        fn = rng.choice(FORBIDDEN_PATHS + extra_paths)
        body = valid_body(job_id, queue, fn)
        args = [hostile_value(rng) for _ in range(rng.randrange(3))]
        # to a live worker, arguments that do nothing even if the call ran (shell commands
        # are for the marker calls of the test)
        body["args"] = [] if bounded else args
        return Hostile(json_text(body), headers, f"forbidden {fn!r}")
    if shape <= 8:
        names = rng.sample(FIELDS, rng.randrange(1, len(FIELDS)))
        body = {name: hostile_value(rng) for name in names}
        if rng.random() < 0.5:  # often keep what a decoder needs, so deeper checks run
            body.update(id=job_id, queue=queue)
        if bounded:
            _bound(body)
        return Hostile(json_text(body), headers, "random fields")
    size = rng.choice([0, 1, 8, 64, 512])
    return Hostile(rng.randbytes(size), headers, f"{size} random bytes")


def _bounded_bytes(payload: bytes, bounded: bool) -> bytes:
    """A byte-mutated message may still run: make sure it cannot run for long either."""
    if not bounded:
        return payload
    try:
        body = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(body, dict):
        bounded_body = dict(body)
        _bound(bounded_body)
        if bounded_body != body:
            return json_text(bounded_body)
    return payload


def messages(seed: int, count: int, queue: str, **options: Any) -> Iterator[Hostile]:
    """``count`` hostile messages from ``seed`` (the same ones every time)."""
    rng = random.Random(seed)
    for number in range(count):
        yield hostile_message(rng, queue, f"fz-{seed}-{number}", **options)


@dataclass(frozen=True)
class FuzzedMessage:
    """What :func:`decide` reads of a received message."""

    data: bytes
    headers: dict[str, str] | None = None
    subject: str = ""
    reply: str = ""


def allowed_functions() -> set[Any]:
    """The callables a fuzzed message may legitimately reach: :data:`RUNNABLE` (and the
    rest of ``tests.hostile_jobs``) and whatever is registered with ``@naq.task``."""
    from tests import hostile_jobs

    own = {
        value
        for value in vars(hostile_jobs).values()
        if callable(value) and getattr(value, "__module__", None) == hostile_jobs.__name__
    }
    return own | set(TASK_REGISTRY.values())


def problem_with(
    verdict: object,
    msg: FuzzedMessage,
    queue: str,
    allowed: set[Any],
    signature_ok: Callable[[FuzzedMessage], bool] | None,
) -> str | None:
    """What is wrong with ``verdict`` for ``msg`` (``None``: nothing).

    A :class:`Go` must name an allowed function and a message valid for ``queue`` (and,
    with ``signature_ok``, carry a valid signature); a :class:`Refuse` must have a known kind,
    and an envelope only when it was decoded for this queue."""
    if isinstance(verdict, Go):
        if verdict.func not in allowed:
            return f"Go for a function that is not allowed: {verdict.func!r}"
        if verdict.envelope.queue != queue:
            return f"Go for a job of queue {verdict.envelope.queue!r} received on {queue!r}"
        if signature_ok is not None and not signature_ok(msg):
            return "Go for a message without a valid signature"
        return None
    if isinstance(verdict, Refuse):
        if verdict.kind not in REFUSAL_KINDS:
            return f"Refuse of unknown kind {verdict.kind!r}"
        if verdict.envelope is not None and verdict.envelope.queue != queue:
            return "Refuse carrying the envelope of another queue"
        if not isinstance(verdict.reason, str) or not verdict.reason:
            return "Refuse without a reason"
        return None
    return f"decide returned {type(verdict).__name__}, neither Go nor Refuse"


def marker_free(marker: Path) -> str:
    """What the marker file says ran ("" if nothing did)."""
    if not marker.exists():
        return ""
    return f"forbidden code ran: marker {marker} exists ({marker.read_text() or 'touched'})"
