"""Read-only mapping access for naq's info objects, as the original naq's listings gave.

The original naq returned plain dicts from ``list_workers()``, job results and schedule
listings; programs written for it read them as ``w["status"]`` or ``w.get("job_id")``.
naq's info objects are typed dataclasses; mixing in :class:`MappingView` makes them answer
those reads too, with no per-instance cost: the keys are computed once per class.

The mapping view is the original's dict view: every key gives the same value as
``to_dict()[key]``, so times are epoch seconds (floats, as the original stored them), enums
their string values and nested info objects plain dicts. Attribute access stays typed
(``info.started_at`` is an aware datetime).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

#: How an alias key reads its value from an info object (the value is then made plain).
AliasReader = Callable[[Any], Any]


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data the way the original naq kept it: datetimes as epoch
    seconds, enums as their values, info objects as dicts, tuples as lists."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, MappingView):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


#: Per class: its keys (own field names first, then the original's aliases), computed once.
_KEYS: dict[type, tuple[str, ...]] = {}


class MappingView(Mapping[str, Any]):
    """Mixin for a dataclass: ``info["key"]``, ``info.get(key, default)``, ``key in info``,
    ``keys()``, iteration over the keys, ``len()`` and :meth:`to_dict`.

    The keys are the dataclass's field names plus ``ALIASES``: keys the original naq used
    where naq names or shapes the value differently. An alias with a field's name (e.g. a
    worker's ``status``) gives the original's meaning of it under that key. A key that is
    neither raises ``KeyError`` naming it and listing the valid keys.
    """

    __slots__ = ()

    #: original-naq key -> how to read it from the object
    ALIASES: ClassVar[Mapping[str, AliasReader]] = {}

    @classmethod
    def mapping_keys(cls) -> tuple[str, ...]:
        """Every key the mapping view answers, in order: fields, then the original's aliases."""
        keys = _KEYS.get(cls)
        if keys is None:
            fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
            keys = tuple(fields + [name for name in cls.ALIASES if name not in fields])
            _KEYS[cls] = keys
        return keys

    def __getitem__(self, key: str) -> Any:
        reader = self.ALIASES.get(key)
        if reader is not None:
            return plain(reader(self))
        if key in self.mapping_keys():
            return plain(getattr(self, key))
        raise KeyError(
            f"{key!r} is not a key of {type(self).__name__}; "
            f"valid keys: {', '.join(self.mapping_keys())}"
        )

    def __contains__(self, key: object) -> bool:
        return key in self.mapping_keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.mapping_keys())

    def __len__(self) -> int:
        return len(self.mapping_keys())

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict of every key (naq's field names and the original's
        aliases); times as epoch seconds, as the original naq kept them."""
        return {key: self[key] for key in self.mapping_keys()}
