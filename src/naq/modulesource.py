"""Find, without importing anything, the files that importing a module would execute.

The worker's allow-list decides from these files whether a module is the project's own code
before importing it (importing runs code). Folders without ``__init__.py`` (namespace
packages) are followed like Python's import system does, but without needing their parent
packages to be imported first.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import pkgutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ModuleNotLocatedError", "ModuleSource", "ModuleWithoutFileError", "find_module_source"]


class ModuleNotLocatedError(LookupError):
    """No module of that name can be found on ``sys.path`` (or a part is not a package)."""


class ModuleWithoutFileError(LookupError):
    """The module exists but is not a source file (builtin, frozen, or a module object)."""


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """What importing a dotted module name would execute and traverse.

    ``files`` pairs each module of the chain (``a``, ``a.b``, ``a.b.c``) that has a file with
    that file, outermost first; namespace packages have none. ``package_dirs`` are the
    directories of every package in the chain (a namespace package's portions included).
    ``is_namespace`` says the module itself is a namespace package (a folder without
    ``__init__.py``), which defines no functions.
    """

    name: str
    files: tuple[tuple[str, str], ...]
    package_dirs: tuple[str, ...]
    is_namespace: bool


def _attribute(obj: object, name: str) -> object:
    """``getattr(obj, name, None)``, also ``None`` when a hostile ``__getattr__`` raises."""
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - any failure means "no such attribute" here
        return None


def _locations(value: object) -> list[str] | None:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        return None
    try:
        return [entry for entry in value if isinstance(entry, str)]
    except Exception:  # noqa: BLE001 - a __path__ that cannot be listed is no package
        return None


def _loaded_part(name: str, loaded: object) -> tuple[str | None, list[str] | None]:
    """File and package directories of a module already in ``sys.modules``."""
    file = _attribute(loaded, "__file__")
    locations = _locations(_attribute(loaded, "__path__"))
    if not isinstance(file, str) and locations is None:
        raise ModuleWithoutFileError(f"module {name!r} has no source file")
    return (file if isinstance(file, str) else None), locations


def _spec_part(spec: importlib.machinery.ModuleSpec) -> tuple[str | None, list[str] | None]:
    """File and package directories of a found (not imported) module."""
    locations = _locations(spec.submodule_search_locations)
    if spec.has_location and isinstance(spec.origin, str):
        return spec.origin, locations
    if locations is None:
        raise ModuleWithoutFileError(
            f"module {spec.name!r} is not a file ({spec.origin or 'no origin'})"
        )
    return None, locations


def _find_top_level(name: str) -> importlib.machinery.ModuleSpec | None:
    # For a top-level name find_spec only looks the name up: it imports nothing.
    return importlib.util.find_spec(name)


def _find_submodule(name: str, search: Iterable[str]) -> importlib.machinery.ModuleSpec | None:
    """Find ``name`` in its parent package's directories, as the import system's path-based
    finder does, without requiring the parent packages to be imported."""
    portions: list[str] = []
    for entry in search:
        finder = pkgutil.get_importer(entry)
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec = find_spec(name)
        if not isinstance(spec, importlib.machinery.ModuleSpec):
            continue
        if spec.loader is not None:
            return spec
        portions.extend(_locations(spec.submodule_search_locations) or ())
    if not portions:
        return None
    namespace = importlib.machinery.ModuleSpec(name, None, is_package=True)
    namespace.submodule_search_locations = portions
    return namespace


def find_module_source(name: str) -> ModuleSource:
    """Locate dotted module ``name`` and the packages leading to it, importing nothing.

    Modules already imported are described by what they were loaded from. Raises
    :class:`ModuleNotLocatedError` if a part cannot be found or is not a package, and
    :class:`ModuleWithoutFileError` if a part is not a source file.
    """
    parts = name.split(".")
    files: list[tuple[str, str]] = []
    package_dirs: list[str] = []
    search: list[str] | None = None
    file: str | None = None
    for index in range(len(parts)):
        qualified = ".".join(parts[: index + 1])
        loaded = sys.modules.get(qualified)
        if loaded is not None:
            file, search = _loaded_part(qualified, loaded)
        else:
            try:
                if index == 0:
                    spec = _find_top_level(qualified)
                else:
                    spec = _find_submodule(qualified, search or ())
            except (ImportError, ValueError, OSError) as exc:
                raise ModuleNotLocatedError(f"cannot find module {qualified!r}: {exc}") from None
            if spec is None:
                raise ModuleNotLocatedError(
                    f"cannot find module {qualified!r}: no such module on sys.path "
                    "(is --module-path set?)"
                )
            file, search = _spec_part(spec)
        if file is not None:
            files.append((qualified, file))
        if search is not None:
            package_dirs.extend(search)
        elif index < len(parts) - 1:
            raise ModuleNotLocatedError(
                f"cannot find module {name!r}: {qualified!r} is not a package"
            )
    return ModuleSource(
        name=name,
        files=tuple(files),
        package_dirs=tuple(package_dirs),
        is_namespace=file is None,
    )
