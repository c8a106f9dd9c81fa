"""Shared limits: their definitions, stored for every worker, and the book a worker keeps.

A limit is named (``stripe``, ``user:42``) and caps the jobs that take it: at most
``concurrency`` running at once and/or at most ``rate`` starting per second, minute or hour,
across every worker. A name ending in ``*`` defines a *family* (``user:*``: each distinct
``user:<x>`` a limit of its own); ``queue:<queue name>`` limits a whole queue without any
job naming it.

Definitions live in the ``naq_limits`` bucket, one key per definition: ``one.<name>`` for a
concrete limit, ``fam.<prefix>`` for a family. Key-value keys cannot hold ``*``, and NATS
clients refuse ``:`` in them (nats-py's and the ``nats`` CLI's key check), so a ``:`` of the
name is stored as ``=``, which no limit name contains (``user:*`` -> ``fam.user=``). Every
name, rate and concurrency is checked before anything is stored.

:class:`LimitBook` is what a worker knows of them, kept current by a watch of the bucket:
:meth:`LimitBook.resolve` turns the names a job takes into the concrete limits that apply.
Enforcing them is the worker's business, not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from loguru import logger

from . import constants as c
from . import names
from .errors import ConfigurationError, NaqConnectionError, WriteConflictError
from .job import LIMIT_NAME_RE
from .settings import validate_queue_name
from .transport import Connection, kv

#: A name ending in this defines a family: every name starting with what precedes it.
FAMILY_SUFFIX = "*"
#: ``queue:<queue name>`` limits a whole queue, whether or not its jobs name it.
QUEUE_PREFIX = "queue:"
#: Most concurrency a limit may allow, and most starts a rate may allow per unit.
MAX_CONCURRENCY = 1_000_000
MAX_RATE_COUNT = 1_000_000_000
#: Rate units and their length in seconds.
RATE_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(r"([0-9]{1,12})/([smh])")
_RATE_HELP = "use COUNT/UNIT with a whole COUNT >= 1 and UNIT s, m or h ('100/s', '10/m', '500/h')"
_NAME_HELP = (
    "use 1-128 letters, digits, '_', '-' or ':' ('stripe', 'user:42'), or such a prefix "
    "ending in '*' for a family ('user:*')"
)
_QUEUE_PART_RE = re.compile(r"[A-Za-z0-9_-]*")

#: Key prefixes in the bucket: a concrete limit, a family.
_ONE, _FAMILY = "one.", "fam."
#: What a ``:`` of a name is stored as in a key-value key.
_KEY_COLON = "="
#: Compare-and-set attempts of :func:`delete_limit` while others rewrite the definition.
_CAS_ATTEMPTS = 10
#: Pause before a failed watch of the bucket is opened again, seconds.
_REWATCH_DELAY = 1.0


# -------------------------------------------------------------------------- definitions


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts per ``per`` seconds (one second, minute or hour)."""

    count: int
    per: float

    def __post_init__(self) -> None:
        count = self.count
        if isinstance(count, bool) or not isinstance(count, int):
            raise ConfigurationError(f"a rate's count must be a whole number, got {count!r}")
        if not 1 <= count <= MAX_RATE_COUNT:
            raise ConfigurationError(
                f"a rate's count must be 1 to {MAX_RATE_COUNT:,}, got {count!r}"
            )
        if self.per not in RATE_UNITS.values():
            raise ConfigurationError(f"a rate is per 1, 60 or 3600 seconds, got {self.per!r}")

    @classmethod
    def parse(cls, text: object) -> Rate:
        """The rate ``text`` spells (``"100/s"``, ``"10/m"``, ``"500/h"``); anything else
        raises :class:`~naq.errors.ConfigurationError`."""
        if not isinstance(text, str):
            raise ConfigurationError(f"rate must be a string like '100/s', got {text!r}")
        found = _RATE_RE.fullmatch(text)
        if found is None:
            raise ConfigurationError(f"invalid rate {text[:40]!r}: {_RATE_HELP}")
        count = int(found.group(1))
        if not 1 <= count <= MAX_RATE_COUNT:
            raise ConfigurationError(
                f"invalid rate {text!r}: the count must be 1 to {MAX_RATE_COUNT:,}"
            )
        return cls(count, RATE_UNITS[found.group(2)])

    @property
    def per_second(self) -> float:
        """Starts allowed per second, on average."""
        return self.count / self.per

    def __str__(self) -> str:
        unit = next(u for u, seconds in RATE_UNITS.items() if seconds == self.per)
        return f"{self.count}/{unit}"


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit definition: ``name`` (concrete, a ``prefix*`` family or ``queue:<name>``)
    and at least one of ``concurrency`` (jobs holding it at once) and ``rate`` (starts per
    time unit), both across every worker. Invalid values raise
    :class:`~naq.errors.ConfigurationError`."""

    name: str
    concurrency: int | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        check_limit_name(self.name)
        concurrency = self.concurrency
        if concurrency is not None and (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY
        ):
            raise ConfigurationError(
                f"concurrency must be a whole number 1 to {MAX_CONCURRENCY:,}, got {concurrency!r}"
            )
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise ConfigurationError(f"rate must be a Rate, got {self.rate!r}")
        if concurrency is None and self.rate is None:
            raise ConfigurationError(f"limit {self.name!r} needs a concurrency, a rate or both")

    @property
    def family_prefix(self) -> str | None:
        """What the names of this family start with (``"user:"``); ``None`` if concrete."""
        return self.name[: -len(FAMILY_SUFFIX)] if self.name.endswith(FAMILY_SUFFIX) else None

    def to_json(self) -> dict[str, Any]:
        """The definition as JSON-ready data, the rate as its text (``"100/s"``)."""
        rate = None if self.rate is None else str(self.rate)
        return {"name": self.name, "concurrency": self.concurrency, "rate": rate}


def define(name: str, concurrency: int | None = None, rate: str | Rate | None = None) -> LimitSpec:
    """A checked definition from user input (``rate`` as text like ``"100/s"``)."""
    parsed = rate if rate is None or isinstance(rate, Rate) else Rate.parse(rate)
    return LimitSpec(name, concurrency, parsed)


def check_limit_name(name: object) -> str:
    """``name`` if it may name a definition (concrete, ``prefix*`` family or
    ``queue:<queue name>``), else :class:`~naq.errors.ConfigurationError` saying why."""
    if not isinstance(name, str):
        raise ConfigurationError(
            f"invalid limit name {names.shown(name)}: a limit name must be a string"
        )
    shown = names.shown(name)
    family = name.endswith(FAMILY_SUFFIX)
    base = name[: -len(FAMILY_SUFFIX)] if family else name
    if family and not base:
        raise ConfigurationError(
            f"invalid limit name {shown}: a family needs a prefix before '*' ('user:*')"
        )
    if not LIMIT_NAME_RE.fullmatch(base):
        raise ConfigurationError(f"invalid limit name {shown}: {_NAME_HELP}")
    if base.startswith(QUEUE_PREFIX):
        queue = base[len(QUEUE_PREFIX) :]
        if not family:  # queue:<name> limits that queue: its name must be one
            try:
                validate_queue_name(queue)
            except ConfigurationError as exc:
                raise ConfigurationError(f"invalid limit name {shown}: {exc}") from None
        elif not _QUEUE_PART_RE.fullmatch(queue):
            raise ConfigurationError(
                f"invalid limit name {shown}: after 'queue:' a family names the start of "
                "queue names (letters, digits, '_' and '-')"
            )
    return name


# ------------------------------------------------------------------------- storage keys


def key_token(name: str) -> str:
    """``name`` (a limit name or a concrete limit's key) as a key-value key token: its
    ``:`` as ``=`` (``user:42`` -> ``user=42``), which every NATS client accepts."""
    return name.replace(":", _KEY_COLON)


def storage_key(name: str) -> str:
    """The key of definition ``name`` in the limits bucket (``one.stripe``,
    ``fam.user=``)."""
    check_limit_name(name)
    if name.endswith(FAMILY_SUFFIX):
        return _FAMILY + key_token(name[: -len(FAMILY_SUFFIX)])
    return _ONE + key_token(name)


def name_of_key(key: str) -> str | None:
    """The definition name stored under ``key``; ``None`` for a key naq does not write."""
    for prefix, suffix in ((_ONE, ""), (_FAMILY, FAMILY_SUFFIX)):
        if key.startswith(prefix):
            if FAMILY_SUFFIX in key:  # never in a key naq writes (nor in any NATS key)
                return None
            name = key[len(prefix) :].replace(_KEY_COLON, ":") + suffix
            try:
                return check_limit_name(name)
            except ConfigurationError:
                return None
    return None


class _StoredLimit(msgspec.Struct, kw_only=True):
    """A definition's stored value (its name is its key)."""

    concurrency: int | None = None
    rate: str | None = None
    updated_at: float = 0.0


_decoder = msgspec.json.Decoder(_StoredLimit)
_encoder = msgspec.json.Encoder()


def _decode(key: str, data: bytes) -> LimitSpec | None:
    """The definition stored as ``data`` under ``key``; ``None`` (logged) if unreadable."""
    name = name_of_key(key)
    try:
        if name is None:
            raise ConfigurationError(f"{key!r} is not a limit key")
        stored = _decoder.decode(data)
        return define(name, stored.concurrency, stored.rate)
    except (msgspec.DecodeError, msgspec.ValidationError, ConfigurationError) as exc:
        logger.warning(
            "ignoring unreadable limit definition {} in {}: {}", key, c.LIMITS_BUCKET, exc
        )
        return None


async def set_limit(
    conn: Connection,
    name: str,
    concurrency: int | None = None,
    rate: str | Rate | None = None,
) -> LimitSpec:
    """Define limit ``name`` (or replace its definition); everything is checked before
    anything is stored. Returns the definition."""
    spec = define(name, concurrency, rate)
    stored = _StoredLimit(
        concurrency=spec.concurrency,
        rate=None if spec.rate is None else str(spec.rate),
        updated_at=time.time(),
    )
    await kv.put(conn, c.LIMITS_BUCKET, storage_key(spec.name), _encoder.encode(stored))
    return spec


async def delete_limit(conn: Connection, name: str) -> bool:
    """Delete the definition ``name``; False if there was none."""
    key = storage_key(name)
    for _ in range(_CAS_ATTEMPTS):
        entry = await kv.get(conn, c.LIMITS_BUCKET, key)
        if entry is None:
            return False
        try:
            await kv.delete(conn, c.LIMITS_BUCKET, key, last=entry.revision)
        except WriteConflictError:  # redefined meanwhile: delete what is there now
            continue
        return True
    raise WriteConflictError(
        f"could not delete limit {name!r}: others kept redefining it ({_CAS_ATTEMPTS} attempts)"
    )


async def list_limits(conn: Connection) -> list[LimitSpec]:
    """Every stored definition, sorted by name."""
    entries = await kv.snapshot(conn, c.LIMITS_BUCKET)
    specs = (_decode(entry.key, entry.value) for entry in entries)
    return sorted((s for s in specs if s is not None), key=lambda s: s.name)


# ---------------------------------------------------------------------------- resolving


@dataclass(frozen=True, slots=True)
class ConcreteLimit:
    """One limit a job takes: its ``key`` (``"user:42"``, ``"stripe"``, ``"queue:emails"``)
    and the definition that applies to it (``spec.name`` is ``"user:*"`` for a family's)."""

    key: str
    spec: LimitSpec

    @property
    def token(self) -> str:
        """:attr:`key` as a key-value key token (see :func:`key_token`)."""
        return key_token(self.key)


class LimitDefinitions:
    """A fixed set of definitions and how they apply to the limit names jobs take."""

    def __init__(self, specs: Iterable[LimitSpec] = ()) -> None:
        by_name = {spec.name: spec for spec in specs}  # a later one replaces an earlier
        self._by_name = dict(sorted(by_name.items()))
        self._exact = {n: s for n, s in by_name.items() if s.family_prefix is None}
        families = [s for s in by_name.values() if s.family_prefix is not None]
        #: Families, longest prefix first: the first whose prefix a name starts with wins.
        self._families = sorted(families, key=lambda s: (-len(s.name), s.name))
        self._queue_families = [s for s in self._families if s.name.startswith(QUEUE_PREFIX)]

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[LimitSpec]:
        return iter(self._by_name.values())

    def get(self, name: str) -> LimitSpec | None:
        """The definition named ``name`` (``"user:*"`` for a family), if any."""
        return self._by_name.get(name)

    def match(self, name: str) -> LimitSpec | None:
        """The definition that applies to the concrete name ``name``: its own, else the
        family with the longest prefix it starts with; ``None`` if none does."""
        return self._exact.get(name) or _longest_prefix(name, self._families)

    def resolve(self, names: Iterable[str], queue: str) -> list[ConcreteLimit]:
        """The limits a job taking ``names`` on ``queue`` is held to: each name that has a
        definition (its own, else its family's), in the order given, then the queue's
        (``queue:<queue>``, or a ``queue:...*`` family) whether or not the job named it.
        A name nobody defined is skipped: the job runs unlimited by it."""
        if not self._by_name:
            return []
        found: dict[str, ConcreteLimit] = {}
        for name in names:
            spec = self.match(name)
            if spec is not None and name not in found:
                found[name] = ConcreteLimit(name, spec)
        queue_key = QUEUE_PREFIX + queue
        if queue_key not in found:
            spec = self._exact.get(queue_key) or _longest_prefix(queue_key, self._queue_families)
            if spec is not None:
                found[queue_key] = ConcreteLimit(queue_key, spec)
        return list(found.values())


def _longest_prefix(name: str, families: list[LimitSpec]) -> LimitSpec | None:
    """The first of ``families`` (longest prefix first) whose prefix ``name`` starts with."""
    for spec in families:
        prefix = spec.family_prefix
        if prefix is not None and name.startswith(prefix):
            return spec
    return None


# --------------------------------------------------------------------------- the book


@dataclass
class _Followed:
    """The definitions the book follows, by storage key."""

    specs: dict[str, LimitSpec] = field(default_factory=dict)

    def apply(self, key: str, value: bytes | None) -> bool:
        """Apply one change of the bucket; True if a definition changed."""
        spec = None if value is None else _decode(key, value)
        if spec is None:
            return self.specs.pop(key, None) is not None
        changed = self.specs.get(key) != spec
        self.specs[key] = spec
        return changed


class LimitBook:
    """The limit definitions a worker knows, kept current by a watch of the limits bucket
    (a definition set or deleted anywhere applies here within moments).

    ``await book.start()`` reads every definition before it returns; ``resolve`` then
    answers from memory. After each change :attr:`changed` is set (clear it once handled),
    :attr:`version` grows and ``on_change`` (if given) is called. A failed watch, or a
    reconnect, opens a new one: the definitions stay as they were until it has read them
    all again. ``await book.stop()`` ends the watch.
    """

    def __init__(self, conn: Connection, on_change: Callable[[], None] | None = None) -> None:
        self._conn = conn
        self._on_change = on_change
        self._definitions = LimitDefinitions()
        self._followed = _Followed()
        self._task: asyncio.Task[None] | None = None
        self._rewatch = asyncio.Event()
        self._listening = False
        #: Set after every change of the definitions; whoever reacts clears it.
        self.changed = asyncio.Event()
        #: How many times the definitions changed since :meth:`start`.
        self.version = 0

    @property
    def definitions(self) -> LimitDefinitions:
        """The definitions as they are now (a fixed set: it never changes under you)."""
        return self._definitions

    def resolve(self, names: Iterable[str], queue: str) -> list[ConcreteLimit]:
        """See :meth:`LimitDefinitions.resolve`, with the current definitions."""
        return self._definitions.resolve(names, queue)

    async def start(self) -> None:
        """Read every definition, then follow changes in the background."""
        if self._task is not None:
            return
        watch = await kv.watch(self._conn, c.LIMITS_BUCKET)
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._follow(watch, ready), name="naq-limit-book")
        if not self._listening:
            self._conn.add_reconnect_listener(self._on_reconnect)
            self._listening = True
        try:
            await ready
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop following changes (the definitions read so far stay)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _on_reconnect(self) -> None:
        if self._task is not None:  # the watch's consumer may be gone: open a new one
            self._rewatch.set()

    async def _follow(self, watch: kv.Watch, ready: asyncio.Future[None]) -> None:
        """Follow the bucket, watching anew after a failure or a reconnect."""
        while True:
            self._rewatch.clear()
            reading = asyncio.create_task(self._read(watch, ready))
            rewatch = asyncio.create_task(self._rewatch.wait())
            try:
                done, _ = await asyncio.wait(
                    (reading, rewatch), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (reading, rewatch):
                    task.cancel()
                await asyncio.gather(reading, rewatch, return_exceptions=True)
            if rewatch not in done:  # the watch failed or ended by itself
                error = None if reading.cancelled() else reading.exception()
                if not ready.done():  # start() reports it
                    ready.set_exception(error or NaqConnectionError("the limits watch ended"))
                    return
                logger.warning("watch of limit definitions ended ({}); watching again", error)
                await asyncio.sleep(_REWATCH_DELAY)
            watch = await self._open_watch()

    async def _open_watch(self) -> kv.Watch:
        while True:
            try:
                return await kv.watch(self._conn, c.LIMITS_BUCKET)
            except Exception as exc:  # noqa: BLE001 - keep trying while the worker runs
                logger.warning("cannot watch limit definitions ({}); trying again", exc)
                await asyncio.sleep(_REWATCH_DELAY)

    async def _read(self, watch: kv.Watch, ready: asyncio.Future[None]) -> None:
        """Read every current definition into a new set, take it, then apply each change."""
        fresh: _Followed | None = _Followed()
        try:
            async for change in watch:
                if fresh is not None:
                    if change.key == "" and change.value is None:  # the initial values ended
                        self._followed, fresh = fresh, None
                        self._changed()
                        if not ready.done():
                            ready.set_result(None)
                    else:
                        fresh.apply(change.key, change.value)
                elif self._followed.apply(change.key, change.value):
                    self._changed()
        finally:
            await watch.stop()

    def _changed(self) -> None:
        self._definitions = LimitDefinitions(self._followed.specs.values())
        self.version += 1
        self.changed.set()
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception as exc:  # noqa: BLE001 - a listener must not stop the book
                logger.warning("limit change listener failed: {}", exc)
