"""Faithful JSON value codec: Python values <-> JSON-native structures, without loss.

:func:`to_wire` turns a Python value into something JSON can carry (``None``, ``bool``,
``int``, ``float``, ``str``, ``list`` and ``dict`` with ``str`` keys) and :func:`from_wire`
turns it back into a value of the *same type* and the same value. Anything that cannot make
that round trip is refused with :class:`~naq.errors.SerializationError` instead of being
silently changed.

JSON-native values travel as themselves. Everything else travels as a tagged object
``{"__naq__": "<tag>", "v": <payload>}``:

============== ============ =====================================================
Python type    tag          payload
============== ============ =====================================================
``datetime``   datetime     ``isoformat()`` (+ ``"tz"``, ``"tzname"``, ``"fold"``)
``date``       date         ``isoformat()``
``time``       time         ``isoformat()`` (+ ``"tz"``, ``"tzname"``, ``"fold"``)
``timedelta``  timedelta    ``[days, seconds, microseconds]``
``UUID``       uuid         canonical string
``Decimal``    decimal      ``str()`` (keeps ``"1.10"``, ``NaN``, ``-0``, ...)
``bytes``      bytes        standard base64
``bytearray``  bytearray    standard base64
``tuple``      tuple        list of encoded items
``set``        set          list of encoded items
``frozenset``  frozenset    list of encoded items
``float``      float        ``"nan"``, ``"inf"`` or ``"-inf"`` (finite floats are native)
``int``        int          hex string, only outside the 64-bit range
``dict``       dict         list of ``[key, value]`` pairs, both encoded
============== ============ =====================================================

A ``dict`` travels as a JSON object only when every key is exactly ``str`` and none is
``"__naq__"``; otherwise it uses the ``dict`` tag, so user data can never be misread as a tag.

Time zones: an aware value keeps its exact wall-clock time, UTC offset and ``fold``. A
:class:`zoneinfo.ZoneInfo` zone travels by its key (``"Europe/Paris"``) and comes back as
the same ``ZoneInfo`` (the receiver needs that zone in its tz database); a
:class:`datetime.timezone` comes back as an equal ``timezone``, custom name included. Other
``tzinfo`` implementations (pytz, dateutil, ``ZoneInfo.from_file``) are refused, because
they cannot be rebuilt faithfully.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from naq.errors import SerializationError

__all__ = ["TAG", "decode_json", "encode_json", "from_wire", "to_wire"]

TAG = "__naq__"
"""The key marking a tagged value."""

MAX_DEPTH = 128
"""How deeply containers may nest inside one value."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

_SUPPORTED = (
    "pass JSON values, datetime, date, time, timedelta, UUID, Decimal, bytes, tuple or set, "
    "or use NAQ_JOB_SERIALIZER=pickle"
)

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


class _Refused(Exception):
    """Internal: raised deep in the encoder; the path is collected while unwinding."""

    def __init__(self, obj: object, reason: str | None = None) -> None:
        super().__init__()
        self.obj = obj
        self.reason = reason
        self.segments: list[str] = []


class _TooDeep(Exception):
    """Internal: nesting exceeded :data:`MAX_DEPTH` (or a reference cycle)."""

    def __init__(self) -> None:
        super().__init__()
        self.segments: list[str] = []


# --------------------------------------------------------------------------- encoding


def to_wire(value: object, *, what: str = "argument", path: str = "") -> object:
    """Convert ``value`` into a JSON-native structure that :func:`from_wire` restores exactly.

    ``what`` names the value in error messages (``"argument"``, ``"result"``) and ``path`` is
    the location of ``value`` itself (``"args"``, ``"kwargs"``); the location of an offending
    element inside it is appended, as in ``argument kwargs['x'][2] of type Foo``.

    Raises :class:`~naq.errors.SerializationError` for any value that cannot travel
    faithfully: unsupported or subclassed types, aware values with an unsupported ``tzinfo``,
    reference cycles and nesting deeper than :data:`MAX_DEPTH`.
    """
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if type(value) is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
    elif type(value) is float and math.isfinite(value):
        return value
    try:
        return _encode(value, 0)
    except _Refused as exc:
        where = _where(what, path, exc.segments)
        raise SerializationError(_refusal_message(where, exc.obj, exc.reason)) from None
    except _TooDeep as exc:
        cycle = _find_cycle(value)
        if cycle is not None:
            container, element = (_where(what, path, [segment]) for segment in cycle)
            msg = (
                f"{element} refers back to {container} (a reference cycle) "
                "and cannot be serialized as JSON"
            )
        else:
            where = _where(what, path, exc.segments)
            msg = f"{where} is nested more than {MAX_DEPTH} levels deep and cannot be serialized"
        raise SerializationError(msg) from None


def _where(what: str, path: str, segments: list[str]) -> str:
    inner = "".join(reversed(segments))
    if path:
        return f"{what} {path}{inner}"
    return f"{what}{inner}"


def _type_name(obj: object) -> str:
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _refusal_message(where: str, obj: object, reason: str | None) -> str:
    name = _type_name(obj)
    if reason is not None:
        return f"{where} of type {name} cannot be serialized as JSON: {reason}"
    for base in (bool, int, float, str, bytes, list, tuple, dict, set, frozenset):
        if isinstance(obj, base):
            return (
                f"{where} of type {name} (a subclass of {base.__name__}) cannot be serialized "
                f"as JSON without changing its type; convert it to a plain {base.__name__}, "
                f"or use NAQ_JOB_SERIALIZER=pickle"
            )
    return f"{where} of type {name} cannot be serialized as JSON; {_SUPPORTED}"


def _key_label(key: object) -> str:
    text = repr(key)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"[{text}]"


def _encode(value: object, depth: int) -> object:
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if type(value) is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        return {TAG: "int", "v": hex(value)}
    if type(value) is float:
        if math.isfinite(value):
            return value
        return {TAG: "float", "v": repr(value)}
    encoder = _ENCODERS.get(t)
    if encoder is None:
        raise _Refused(value)
    if depth >= MAX_DEPTH:
        raise _TooDeep()
    return encoder(value, depth + 1)


def _encode_tuple(value: tuple[object, ...], depth: int) -> object:
    return {TAG: "tuple", "v": _encode_items(value, depth)}


def _encode_set(value: set[object], depth: int) -> object:
    return {TAG: "set", "v": _encode_items(value, depth)}


def _encode_frozenset(value: frozenset[object], depth: int) -> object:
    return {TAG: "frozenset", "v": _encode_items(value, depth)}


def _encode_date(value: date, depth: int) -> object:
    return {TAG: "date", "v": value.isoformat()}


def _encode_timedelta(value: timedelta, depth: int) -> object:
    return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}


def _encode_uuid(value: UUID, depth: int) -> object:
    return {TAG: "uuid", "v": str(value)}


def _encode_decimal(value: Decimal, depth: int) -> object:
    return {TAG: "decimal", "v": str(value)}


def _encode_bytes(value: bytes, depth: int) -> object:
    return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}


def _encode_bytearray(value: bytearray, depth: int) -> object:
    return {TAG: "bytearray", "v": base64.b64encode(value).decode("ascii")}


def _encode_list(value: list[object], depth: int) -> object:
    return _encode_items(value, depth)


def _encode_items(items: Iterable[object], depth: int) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for index, item in enumerate(items):
        t = type(item)
        if t is str or t is bool or item is None:
            append(item)
            continue
        try:
            append(_encode(item, depth))
        except (_Refused, _TooDeep) as exc:
            # Sets have no stable positions: say "an item of" rather than an index.
            is_set = type(items) is set or type(items) is frozenset
            exc.segments.append("<set item>" if is_set else f"[{index}]")
            raise
    return out


def _encode_dict(value: dict[Any, Any], depth: int) -> object:
    plain = TAG not in value
    if plain:
        for key in value:
            if type(key) is not str:
                plain = False
                break
    if plain:
        out: dict[str, Any] = {}
        for key, item in value.items():
            try:
                out[key] = _encode(item, depth)
            except (_Refused, _TooDeep) as exc:
                exc.segments.append(_key_label(key))
                raise
        return out
    pairs: list[list[Any]] = []
    for index, (key, item) in enumerate(value.items()):
        try:
            wire_key = _encode(key, depth)
        except (_Refused, _TooDeep) as exc:
            exc.segments.append(f"<key #{index}>")
            raise
        try:
            wire_item = _encode(item, depth)
        except (_Refused, _TooDeep) as exc:
            exc.segments.append(_key_label(key))
            raise
        pairs.append([wire_key, wire_item])
    return {TAG: "dict", "v": pairs}


def _tz_extras(value: datetime | time, tz: tzinfo | None) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if tz is not None:
        if type(tz) is ZoneInfo and tz.key is not None:
            extras["tz"] = tz.key
        elif type(tz) is timezone:
            offset = tz.utcoffset(None)
            assert offset is not None
            name = tz.tzname(None)
            if name != timezone(offset).tzname(None):
                extras["tzname"] = name
        else:
            raise _Refused(
                value,
                f"its tzinfo of type {_type_name(tz)} cannot be rebuilt faithfully; "
                "use zoneinfo.ZoneInfo or datetime.timezone",
            )
    if value.fold:
        extras["fold"] = 1
    return extras


def _encode_datetime(value: datetime, depth: int) -> object:
    return {TAG: "datetime", "v": value.isoformat(), **_tz_extras(value, value.tzinfo)}


def _encode_time(value: time, depth: int) -> object:
    extras = _tz_extras(value, value.tzinfo)
    # A ZoneInfo gives a time no offset; send the wall-clock time and the zone key.
    text = value.replace(tzinfo=None).isoformat() if "tz" in extras else value.isoformat()
    return {TAG: "time", "v": text, **extras}


_ENCODERS: dict[type, Callable[[Any, int], object]] = {
    list: _encode_list,
    dict: _encode_dict,
    tuple: _encode_tuple,
    set: _encode_set,
    frozenset: _encode_frozenset,
    datetime: _encode_datetime,
    date: _encode_date,
    time: _encode_time,
    timedelta: _encode_timedelta,
    UUID: _encode_uuid,
    Decimal: _encode_decimal,
    bytes: _encode_bytes,
    bytearray: _encode_bytearray,
}


def _children(obj: object) -> list[tuple[str, object]] | None:
    """The (path segment, child) pairs of a container, or ``None`` for a leaf."""
    if type(obj) is list or type(obj) is tuple:
        return [(f"[{index}]", item) for index, item in enumerate(obj)]
    if type(obj) is set or type(obj) is frozenset:
        return [("<set item>", item) for item in obj]
    if type(obj) is dict:
        out: list[tuple[str, object]] = []
        for index, (key, item) in enumerate(obj.items()):
            out.append((f"<key #{index}>", key))
            out.append((_key_label(key), item))
        return out
    return None


def _find_cycle(value: object) -> tuple[str, str] | None:
    """Find a reference cycle: (path of a container, path of the element referring back to it).

    Iterative, so values nested deeper than the recursion limit are fine.
    """
    active: dict[int, str] = {}
    stack: list[tuple[object, str, bool]] = [(value, "", False)]
    while stack:
        obj, where, leaving = stack.pop()
        if leaving:
            del active[id(obj)]
            continue
        children = _children(obj)
        if children is None:
            continue
        if id(obj) in active:
            return active[id(obj)], where
        active[id(obj)] = where
        stack.append((obj, where, True))
        stack.extend((child, where + segment, False) for segment, child in reversed(children))
    return None


# --------------------------------------------------------------------------- decoding


def from_wire(value: object) -> object:
    """Rebuild the Python value that :func:`to_wire` encoded into ``value``.

    Raises :class:`~naq.errors.SerializationError` if ``value`` holds a malformed or unknown
    tag (the payload did not come from :func:`to_wire`).
    """
    t = type(value)
    if t is str or t is int or t is bool or t is float or value is None:
        return value
    try:
        return _decode(value)
    except SerializationError:
        raise
    except RecursionError:
        raise SerializationError("payload is nested too deeply to decode") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise SerializationError(f"malformed tagged value in payload: {exc}") from None


def _decode(value: object) -> object:
    if type(value) is list:
        return [_decode(item) for item in value]
    if type(value) is dict:
        if TAG in value:
            return _decode_tagged(value)
        return {key: _decode(item) for key, item in value.items()}
    return value


def _decode_tagged(obj: dict[str, Any]) -> object:
    tag = obj[TAG]
    payload = obj["v"]
    if tag == "tuple":
        return tuple(_decode(item) for item in _as_list(payload))
    if tag == "dict":
        out: dict[Any, Any] = {}
        for pair in _as_list(payload):
            key, item = _as_list(pair)
            out[_decode(key)] = _decode(item)
        return out
    if tag == "set":
        return {_decode(item) for item in _as_list(payload)}
    if tag == "frozenset":
        return frozenset(_decode(item) for item in _as_list(payload))
    if tag == "datetime":
        return _restore_tz(datetime.fromisoformat(_as_str(payload)), obj)
    if tag == "date":
        return date.fromisoformat(_as_str(payload))
    if tag == "time":
        return _restore_tz(time.fromisoformat(_as_str(payload)), obj)
    if tag == "timedelta":
        days, seconds, micros = _as_list(payload)
        return timedelta(days=_as_int(days), seconds=_as_int(seconds), microseconds=_as_int(micros))
    if tag == "uuid":
        return UUID(_as_str(payload))
    if tag == "decimal":
        try:
            return Decimal(_as_str(payload))
        except InvalidOperation:
            raise ValueError(f"invalid Decimal {payload!r}") from None
    if tag == "bytes" or tag == "bytearray":
        try:
            raw = base64.b64decode(_as_str(payload), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64 for {tag}: {exc}") from None
        return raw if tag == "bytes" else bytearray(raw)
    if tag == "float":
        text = _as_str(payload)
        if text not in ("nan", "inf", "-inf"):
            raise ValueError(f"invalid non-finite float {text!r}")
        return float(text)
    if tag == "int":
        return int(_as_str(payload), 16)
    raise SerializationError(
        f"unknown tag {tag!r} in payload; was it written by a newer version of naq?"
    )


_Temporal = TypeVar("_Temporal", datetime, time)


def _restore_tz(value: _Temporal, obj: dict[str, Any]) -> _Temporal:
    key = obj.get("tz")
    if key is not None:
        try:
            zone = ZoneInfo(_as_str(key))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SerializationError(
                f"time zone {key!r} is not available here ({exc}); install tzdata"
            ) from None
        value = value.replace(tzinfo=zone)
    name = obj.get("tzname")
    if name is not None:
        offset = value.utcoffset()
        if offset is None:
            raise ValueError("tzname given for a naive value")
        value = value.replace(tzinfo=timezone(offset, _as_str(name)))
    if obj.get("fold"):
        value = value.replace(fold=1)
    return value


def _as_list(value: object) -> list[Any]:
    if type(value) is not list:
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _as_str(value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _as_int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- JSON bytes


def encode_json(value: object) -> bytes:
    """Encode a JSON-native structure (as returned by :func:`to_wire`) to JSON bytes.

    This is a thin msgspec wrapper: pass values through :func:`to_wire` first, since msgspec
    alone would, for example, write ``nan`` as ``null``.
    """
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise SerializationError(f"cannot encode value as JSON: {exc}") from None


def decode_json(data: bytes | bytearray | memoryview | str) -> object:
    """Decode JSON bytes into a JSON-native structure (pass it to :func:`from_wire`)."""
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise SerializationError(f"payload is not valid JSON: {exc}") from None
