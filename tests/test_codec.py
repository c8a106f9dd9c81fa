"""Tests for naq.codec: every supported value makes an exact round trip, the rest is refused."""

from __future__ import annotations

import enum
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from naq.codec import MAX_DEPTH, TAG, decode_json, encode_json, from_wire, to_wire
from naq.errors import SerializationError


def assert_identical(a: object, b: object) -> None:
    """Same types all the way down, and equal values (NaN compares equal to NaN)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            assert math.isnan(b)
        else:
            assert a == b
            assert math.copysign(1.0, a) == math.copysign(1.0, b)
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_identical(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b)
        for key in a:
            assert_identical(a[key], b[key])
    elif isinstance(a, Decimal):
        assert str(a) == str(b)
    elif isinstance(a, datetime | time):
        assert isinstance(b, datetime | time)
        assert a == b
        assert a.fold == b.fold
        assert a.tzinfo == b.tzinfo
        assert type(a.tzinfo) is type(b.tzinfo)
        assert a.utcoffset() == b.utcoffset()
        if a.tzinfo is not None:
            assert a.tzname() == b.tzname()
    else:
        assert a == b


def round_trip(value: object) -> object:
    wire = to_wire(value)
    back = from_wire(decode_json(encode_json(wire)))
    assert_identical(value, back)
    return wire


PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")

ROUND_TRIP_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**100,
    -(10**5000),
    1.5,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "héllo",
    [],
    {},
    [1, "a", None, True, 2.5],
    {"a": 1, "b": [1, 2]},
    (),
    (1, "a"),
    (1, (2, (3, ()))),
    {1, 2, 3},
    set(),
    frozenset({"a", "b"}),
    b"",
    b"\x00\xff binary",
    bytearray(b"abc"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("-Infinity"),
    Decimal("1E+400"),
    date(2024, 2, 29),
    date(1, 1, 1),
    datetime(2024, 5, 6, 7, 8, 9, 123456),
    datetime(2024, 5, 6, 7, 8, 9, 1, tzinfo=UTC),
    datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(2024, 5, 6, tzinfo=timezone(timedelta(hours=1, seconds=30, microseconds=5))),
    datetime(2024, 5, 6, tzinfo=timezone(timedelta(hours=2), "CEST-ish")),
    datetime(2024, 7, 1, 12, tzinfo=PARIS),
    datetime(2020, 11, 1, 1, 30, tzinfo=NEW_YORK),
    datetime(2020, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK),
    datetime(2020, 11, 1, 1, 30, fold=1),
    datetime.max,
    datetime.min,
    time(0, 0),
    time(23, 59, 59, 999999),
    time(1, 2, 3, tzinfo=timezone(timedelta(hours=5))),
    time(1, 2, 3, 4, tzinfo=PARIS),
    time(1, 2, fold=1),
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(days=-1, seconds=5, microseconds=7),
    timedelta.max,
    timedelta.min,
    {1: "int key", 2.5: "float key", None: "none key", (1, 2): "tuple key"},
    {frozenset({1}): "frozenset key", True: "bool key"},
    {"__naq__": "tuple", "v": [1, 2]},
    {"__naq__": 1},
    [{"x": [(1, {"y": (2, 3)})]}],
    {"nested": {5: {(1, "a"): [{"__naq__": "x"}]}}},
    {"when": [datetime(2024, 1, 1, tzinfo=PARIS), (Decimal("2.50"), b"x")]},
]


def _value_id(value: object) -> str:
    if type(value) is int and value.bit_length() > 256:
        return f"int-{value.bit_length()}-bits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=_value_id)
def test_round_trip(value: object) -> None:
    round_trip(value)


def test_json_native_values_travel_as_themselves() -> None:
    value = [1, "a", None, True, 2.5, {"k": [1, 2]}]
    assert to_wire(value) == value
    assert encode_json(to_wire(value)) == b'[1,"a",null,true,2.5,{"k":[1,2]}]'


def test_scalars_are_returned_unchanged() -> None:
    for value in (None, True, 3, 1.25, "x"):
        assert to_wire(value) is value
        assert from_wire(value) is value


def test_bool_stays_bool_and_int_stays_int() -> None:
    back = from_wire(decode_json(encode_json(to_wire([True, 1, 1.0]))))
    assert isinstance(back, list)
    assert [type(x) for x in back] == [bool, int, float]


def test_non_finite_floats_are_tagged() -> None:
    assert to_wire(float("nan")) == {TAG: "float", "v": "nan"}
    assert to_wire([float("-inf")]) == [{TAG: "float", "v": "-inf"}]


def test_huge_ints_are_tagged_but_64_bit_ints_are_not() -> None:
    assert to_wire(2**64 - 1) == 2**64 - 1
    assert to_wire(-(2**63)) == -(2**63)
    assert to_wire(2**64) == {TAG: "int", "v": hex(2**64)}
    big = 7**20000  # more digits than int->str conversion allows by default
    back = from_wire(decode_json(encode_json(to_wire([big]))))
    assert back == [big]


def test_dict_with_tag_key_is_escaped() -> None:
    value = {"__naq__": "bytes", "v": "AAAA"}
    wire = to_wire(value)
    assert isinstance(wire, dict)
    assert wire[TAG] == "dict"
    assert from_wire(wire) == value


def test_dict_with_non_str_keys_keeps_order() -> None:
    value = {3: "c", 1: "a", "2": "b"}
    back = from_wire(to_wire(value))
    assert isinstance(back, dict)
    assert list(back.items()) == list(value.items())


def test_zoneinfo_keeps_its_key() -> None:
    value = datetime(2024, 3, 31, 3, 30, tzinfo=PARIS)
    wire = to_wire(value)
    assert wire == {TAG: "datetime", "v": "2024-03-31T03:30:00+02:00", "tz": "Europe/Paris"}
    back = from_wire(wire)
    assert isinstance(back, datetime)
    assert back.tzinfo is PARIS


def test_naive_datetime_stays_naive() -> None:
    back = from_wire(to_wire(datetime(2024, 1, 2, 3, 4, 5, 6)))
    assert isinstance(back, datetime)
    assert back.tzinfo is None
    assert back.microsecond == 6


def test_shared_references_are_not_cycles() -> None:
    shared = [1, 2]
    assert from_wire(to_wire({"a": shared, "b": (shared, shared)})) == {
        "a": [1, 2],
        "b": ([1, 2], [1, 2]),
    }


def test_what_and_path_prefix_the_location() -> None:
    class Foo:
        pass

    with pytest.raises(SerializationError) as info:
        to_wire({"x": [1, 2, Foo()]}, what="argument", path="kwargs")
    message = str(info.value)
    assert message.startswith("argument kwargs['x'][2] of type ")
    assert "Foo cannot be serialized as JSON" in message
    assert "NAQ_JOB_SERIALIZER=pickle" in message
    assert "datetime, date, time, timedelta, UUID, Decimal, bytes, tuple or set" in message


def test_location_without_path() -> None:
    class Foo:
        pass

    with pytest.raises(SerializationError, match=r"^result\[0\]\['k'\] of type .*Foo"):
        to_wire([{"k": Foo()}], what="result")
    with pytest.raises(SerializationError, match=r"^argument of type .*Foo"):
        to_wire(Foo())


def test_refuses_function() -> None:
    with pytest.raises(SerializationError, match=r"args\[1\] of type function cannot"):
        to_wire([1, test_refuses_function], path="args")


def test_refuses_open_file(tmp_path: Path) -> None:
    with (
        open(tmp_path / "f.txt", "w") as handle,
        pytest.raises(SerializationError, match=r"args\[0\] of type _io\.TextIOWrapper"),
    ):
        to_wire([handle], path="args")


class Color(enum.Enum):
    RED = 1


class Mode(enum.StrEnum):
    FAST = "fast"


class Level(enum.IntEnum):
    HIGH = 3


class MyStr(str):
    pass


class MyDict(dict[str, int]):
    pass


def test_refuses_enum() -> None:
    with pytest.raises(SerializationError, match=r"of type test_codec\.Color cannot be"):
        to_wire(Color.RED)


@pytest.mark.parametrize(
    ("value", "base"),
    [(Mode.FAST, "str"), (Level.HIGH, "int"), (MyStr("x"), "str"), (MyDict(a=1), "dict")],
    ids=["StrEnum", "IntEnum", "str-subclass", "dict-subclass"],
)
def test_refuses_subclasses_of_json_types(value: object, base: str) -> None:
    with pytest.raises(SerializationError) as info:
        to_wire({"k": [value]}, path="kwargs")
    message = str(info.value)
    assert message.startswith("argument kwargs['k'][0] of type test_codec.")
    assert f"(a subclass of {base})" in message
    assert f"convert it to a plain {base}" in message


def test_refuses_bad_dict_key() -> None:
    class Key:
        pass

    with pytest.raises(SerializationError, match=r"args\[0\]<key #1> of type .*Key"):
        to_wire([{"a": 1, Key(): 2}], path="args")


def test_refuses_inside_set() -> None:
    class Item:
        pass

    with pytest.raises(SerializationError, match=r"args\[0\]<set item> of type .*Item"):
        to_wire([{Item()}], path="args")


class FixedTz(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "FIX"


def test_refuses_foreign_tzinfo() -> None:
    with pytest.raises(SerializationError, match=r"tzinfo of type test_codec\.FixedTz"):
        to_wire(datetime(2024, 1, 1, tzinfo=FixedTz()))
    with pytest.raises(SerializationError, match=r"zoneinfo\.ZoneInfo or datetime\.timezone"):
        to_wire(time(1, tzinfo=FixedTz()))


def test_refuses_cycle() -> None:
    cyclic: list[Any] = [1]
    cyclic.append({"again": (cyclic,)})
    with pytest.raises(SerializationError) as info:
        to_wire(cyclic, what="argument", path="args")
    assert str(info.value) == (
        "argument args[1]['again'][0] refers back to argument args (a reference cycle) "
        "and cannot be serialized as JSON"
    )


def test_refuses_self_containing_dict() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["me"] = cyclic
    with pytest.raises(SerializationError, match="reference cycle"):
        to_wire(cyclic, what="result")


def test_refuses_too_deep() -> None:
    deep: list[Any] = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(SerializationError, match=f"nested more than {MAX_DEPTH} levels"):
        to_wire(deep)
    shallow: list[Any] = []
    for _ in range(MAX_DEPTH - 1):
        shallow = [shallow]
    assert from_wire(decode_json(encode_json(to_wire(shallow)))) == shallow


@pytest.mark.parametrize(
    "wire",
    [
        {TAG: "nope", "v": 1},
        {TAG: "tuple"},
        {TAG: "tuple", "v": "notalist"},
        {TAG: "bytes", "v": "!!!"},
        {TAG: "decimal", "v": "abc"},
        {TAG: "datetime", "v": "yesterday"},
        {TAG: "datetime", "v": "2024-01-01T00:00:00", "tz": "No/Such_Zone"},
        {TAG: "float", "v": "1.5"},
        {TAG: "int", "v": 5},
        {TAG: "timedelta", "v": [1, 2]},
        {TAG: "dict", "v": [[1]]},
        [{TAG: "uuid", "v": "xyz"}],
    ],
    ids=repr,
)
def test_from_wire_rejects_malformed_tags(wire: object) -> None:
    with pytest.raises(SerializationError):
        from_wire(wire)


def test_decode_json_rejects_garbage() -> None:
    with pytest.raises(SerializationError, match="not valid JSON"):
        decode_json(b"{nope")


def test_encode_json_rejects_unencodable() -> None:
    with pytest.raises(SerializationError, match="cannot encode"):
        encode_json(object())
