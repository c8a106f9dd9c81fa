"""Function paths (``"module:qualname"``), the ``@task`` registry and the worker allow-list.

A job names its function by path, and a worker turns that path back into a callable with a
:class:`FunctionResolver`. Because a path is chosen by whoever can publish to the queue, the
resolver only runs functions the worker's operator has allowed, in this order:

1. functions registered with :func:`task` (``@naq.task``);
2. never naq's own code, whatever name reaches it (``naq.x``, ``src.naq.x`` from a checkout,
   a vendored copy): refused by name and by the files the module comes from;
3. functions in modules matching a prefix of ``allowed_modules`` (``NAQ_ALLOWED_MODULES``);
4. never the standard library or ``builtins``;
5. functions defined in modules that are the project's own code (see
   :mod:`naq.projectcode`): every file the import would run lies under a ``--module-path``
   directory or the worker's working directory (only when that is a project directory, not
   ``/`` nor one holding the Python installation), and not in an installed-packages
   directory or the Python installation; folders without ``__init__.py`` on the way are
   followed;
6. nothing else.

Deciding never imports the module: importing runs code, so only allowed modules are imported.
Whatever the path, :meth:`FunctionResolver.resolve` raises only
:class:`~naq.errors.FunctionNotAllowedError` or :class:`~naq.errors.FunctionNotFoundError`,
so a worker can always dead-letter the job.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar, overload

from naq.errors import (
    ConfigurationError,
    FunctionNotAllowedError,
    FunctionNotFoundError,
    SerializationError,
)
from naq.mainscript import GUARD, script_module
from naq.modulesource import (
    ModuleNotLocatedError,
    ModuleSource,
    ModuleWithoutFileError,
    find_module_source,
)
from naq.projectcode import ProjectCode, is_naq_code, real_path

__all__ = [
    "TASK_REGISTRY",
    "FunctionNotAllowedError",
    "FunctionNotFoundError",
    "FunctionResolver",
    "add_module_paths",
    "function_path",
    "split_function_path",
    "task",
]

P = ParamSpec("P")
R = TypeVar("R")

TASK_REGISTRY: dict[str, Callable[..., Any]] = {}
"""Functions registered with :func:`task`, by ``"module:qualname"`` path (and alias name)."""

HOW_TO_ALLOW = (
    "register it with @naq.task, put the module under the worker's directory or "
    "--module-path, or add its prefix to NAQ_ALLOWED_MODULES"
)

_MISSING = object()
_SHOWN_CHARS = 200  # longest function path repr quoted in full in an error message
_REMEMBERED_PATHS = 4096  # cached resolutions or refusals kept before starting over
_NAQ_CODE = "which never runs as a job"  # ends every refusal of naq's own code


# --------------------------------------------------------------------------- paths


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def split_function_path(path: str) -> tuple[str, str]:
    """Split ``"module:qualname"`` into ``(module, qualname)``, validating both halves.

    Both halves must be dotted Python identifiers. Raises
    :class:`~naq.errors.ConfigurationError` otherwise.
    """
    module, sep, qualname = path.partition(":")
    if not sep or not _is_dotted_name(module) or not _is_dotted_name(qualname):
        raise ConfigurationError(
            f"invalid function path {path!r}: expected 'module:qualname' made of dotted "
            "identifiers, e.g. 'myapp.tasks:send_email'"
        )
    return module, qualname


def _describe(func: object) -> str:
    name = getattr(func, "__qualname__", None)
    if isinstance(name, str):
        return f"{type(func).__name__} {name!r}"
    return f"callable of type {type(func).__qualname__}"


def _static_path(func: object) -> tuple[str, str]:
    """``(module, qualname)`` from the function's own attributes; refuses what cannot travel."""
    if isinstance(func, functools.partial):
        raise SerializationError(
            "a functools.partial cannot be sent by path; enqueue the underlying function and "
            "pass the bound arguments explicitly"
        )
    owner = getattr(func, "__self__", None)
    bound_types = (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)
    if isinstance(func, bound_types) and not isinstance(owner, type | types.ModuleType | None):
        raise SerializationError(
            f"{_describe(func)} is a method bound to a {type(owner).__qualname__} instance "
            "and cannot be sent by path (the instance would be lost); enqueue a "
            "module-level function, staticmethod or classmethod and pass the data it "
            "needs as arguments"
        )
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not isinstance(qualname, str):
        raise SerializationError(
            f"{_describe(func)} has no __qualname__ and cannot be sent by path; enqueue a "
            "function defined with def at module level"
        )
    if "<lambda>" in qualname:
        raise SerializationError(
            f"lambda {qualname!r} cannot be sent by path because a worker cannot import it; "
            "define the function with def at module level"
        )
    if "<locals>" in qualname:
        raise SerializationError(
            f"function {qualname!r} is defined inside another function, so a worker cannot "
            "import it; move it to module level"
        )
    if not isinstance(module, str) or not module:
        raise SerializationError(
            f"{_describe(func)} has no module and cannot be sent by path; wrap it in a "
            "function of your own defined at module level"
        )
    if not _is_dotted_name(module) or not _is_dotted_name(qualname):
        raise SerializationError(
            f"{_describe(func)} has no importable 'module:qualname' path "
            f"({module}:{qualname}); define it with def at module level"
        )
    return module, qualname


def _same_callable(found: object, func: object) -> bool:
    if found is func:
        return True
    # Methods are re-created on every attribute access; they compare equal when they bind
    # the same function to the same owner.
    method_types = (types.MethodType, types.BuiltinMethodType)
    return isinstance(func, method_types) and type(found) is type(func) and found == func


def _named_in(module: object, qualname: str) -> object:
    """What ``qualname`` (``f`` or ``Class.method``) names in ``module``, or ``_MISSING``."""
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, _MISSING)
        if found is _MISSING:
            break
    return found


def _check_round_trip(func: object, module: str, qualname: str) -> None:
    path = f"{module}:{qualname}"
    loaded = sys.modules.get(module)
    if loaded is None:
        try:
            loaded = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported
            raise SerializationError(
                f"{_describe(func)} is not importable as {path!r}: importing {module!r} "
                f"failed: {type(exc).__name__}: {exc}"
            ) from None
    found = _named_in(loaded, qualname)
    if found is _MISSING:
        raise SerializationError(
            f"{_describe(func)} is not importable as {path!r}: module {module!r} has no "
            f"attribute {qualname!r}"
        )
    if not _same_callable(found, func):
        raise SerializationError(
            f"{_describe(func)} is not importable as {path!r}: that name refers to a "
            "different object (was it redefined, or wrapped by a decorator that does not "
            "use functools.wraps?)"
        )


def function_path(func: object) -> str:
    """Return the ``"module:qualname"`` path a worker will use to find ``func``.

    ``func`` is a module-level function, a class, a staticmethod or classmethod reached
    through its class, or an already-formed ``"module:qualname"`` string (validated, not
    imported), or the alias name of a function registered with ``@task(name=...)``.

    Raises :class:`~naq.errors.ConfigurationError` for non-callables and malformed strings,
    and :class:`~naq.errors.SerializationError` for callables a worker could not import:
    lambdas, nested functions, ``functools.partial``, methods bound to instances, builtins
    without a module, and functions that are not what their path resolves to in this
    process.

    A function defined in the script being run (module ``__main__``) is sent under the
    script's importable module name (``python hello.py`` sends ``hello:greet``), so a worker
    started beside the script runs it; it is refused with a SerializationError saying what
    to write instead when a worker could not import the script by that name or importing it
    would run the script's work again (see :mod:`naq.mainscript`).
    """
    if isinstance(func, str):
        if ":" not in func and func in TASK_REGISTRY:
            return func
        split_function_path(func)
        return func
    if not callable(func):
        raise ConfigurationError(
            f"func must be a callable or a 'module:qualname' string, not {type(func).__name__}"
        )
    module, qualname = _static_path(func)
    if module == "__main__":
        return _main_script_path(func, qualname)
    _check_round_trip(func, module, qualname)
    return f"{module}:{qualname}"


def _main_script_path(func: object, qualname: str) -> str:
    """The path of a function defined in the script being run, under the script's importable
    module name (see :mod:`naq.mainscript`), or a SerializationError saying what to write."""
    script = script_module()
    if script.name is None:
        raise SerializationError(
            f"function {qualname!r} is defined in __main__ (the script being run), which a "
            f"worker cannot import: {script.why_not}. Or move the function into a module "
            "(for example tasks.py) and import it from your script"
        )
    if qualname.partition(".")[0] not in script.defines:
        raise SerializationError(
            f"function {qualname!r} is defined in __main__ under {GUARD!r} (or another "
            "block a worker importing the script does not run), so a worker cannot import "
            "it; define it at the script's top level, outside that block"
        )
    found = _named_in(sys.modules.get("__main__"), qualname)
    if found is _MISSING or not _same_callable(found, func):
        raise SerializationError(
            f"function {qualname!r} is defined in __main__ but is not what that name holds "
            "in the script being run, so a worker cannot import it; define it with def at "
            "the script's top level, or move it into a module (for example tasks.py) and "
            "import it from your script"
        )
    return f"{script.name}:{qualname}"


# --------------------------------------------------------------------------- @task


def _register(func: Callable[..., Any], name: str | None) -> None:
    module, qualname = _static_path(func)
    path = f"{module}:{qualname}"
    keys = [path]
    if name is not None:
        if not isinstance(name, str) or not name or name != name.strip() or " " in name:
            raise ConfigurationError(f"task name must be a non-empty string, not {name!r}")
        if ":" in name:
            split_function_path(name)
        keys.append(name)
    for key in keys:
        existing = TASK_REGISTRY.get(key)
        if existing is None or existing is func:
            continue
        existing_path = "{}:{}".format(*_static_path(existing))
        if existing_path != path:  # the same path again is a module reload: replace it
            raise ConfigurationError(
                f"task name {key!r} is already registered for {existing_path!r}"
            )
    for key in keys:
        TASK_REGISTRY[key] = func


@overload
def task(func: Callable[P, R], /, *, name: str | None = None) -> Callable[P, R]: ...


@overload
def task(
    func: None = None, /, *, name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def task(
    func: Callable[P, R] | None = None, /, *, name: str | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a function as a task that workers may run, and return it unchanged.

    Usable as ``@task``, ``@task()`` or ``@task(name="send_email")``. The function is
    registered under its ``"module:qualname"`` path and, if given, under ``name`` as an alias
    (which can then be enqueued by name). Workers run registered functions without further
    allow-list checks, so the module defining them must be imported by the worker.
    """

    def decorate(inner: Callable[P, R]) -> Callable[P, R]:
        _register(inner, name)
        return inner

    if func is None:
        return decorate
    return decorate(func)


# --------------------------------------------------------------------------- resolver


def add_module_paths(paths: Iterable[str]) -> list[str]:
    """Prepend ``paths`` (made absolute, order kept) to ``sys.path`` if not already there.

    Returns the absolute paths that were added.
    """
    present = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    added: list[str] = []
    for path in paths:
        absolute = os.path.abspath(path)
        if absolute not in present:
            present.add(absolute)
            added.append(absolute)
    sys.path[:0] = added
    return added


def _is_stdlib(top: str) -> bool:
    return top == "builtins" or top in sys.stdlib_module_names or top in sys.builtin_module_names


def _error_text(exc: BaseException) -> str:
    """``"Type: message"`` for any exception, even one whose ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not escape
        text = "(unprintable)"
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _shown(path: str) -> str:
    """``repr(path)``, shortened when a hostile path is very long."""
    text = repr(path)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(path)} chars)"


def _attribute(obj: object, name: str) -> object:
    """``getattr(obj, name, None)``, also ``None`` when a hostile ``__getattr__`` raises."""
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - any failure means "no such attribute" here
        return None


def _loaded_places(obj: object) -> list[str]:
    """The file and package directories a loaded module says it came from."""
    places: list[str] = []
    file = _attribute(obj, "__file__")
    if isinstance(file, str):
        places.append(file)
    locations = _attribute(obj, "__path__")
    if isinstance(locations, Iterable) and not isinstance(locations, str | bytes):
        try:
            places.extend(entry for entry in locations if isinstance(entry, str))
        except Exception:  # noqa: BLE001 - an unlistable __path__ names no place
            pass
    return places


class FunctionResolver:
    """Turn job function paths into callables, running only what the worker allows.

    ``allowed_modules`` are module prefixes (``"myapp"`` allows ``myapp`` and ``myapp.x``
    but not ``myapplication``; prefixes naming naq itself are refused); ``module_paths`` and
    ``cwd`` (default: the current directory at construction) are the directories whose
    modules count as the project's own code, ``cwd`` only when it looks like a project
    directory (see :mod:`naq.projectcode`): :attr:`ignored_roots` says why it was left out.
    Resolutions and refusals are cached.
    """

    def __init__(
        self,
        allowed_modules: Iterable[str] = (),
        module_paths: Iterable[str] = (),
        cwd: str | None = None,
    ) -> None:
        prefixes = tuple(allowed_modules)
        for prefix in prefixes:
            if not isinstance(prefix, str) or not _is_dotted_name(prefix):
                raise ConfigurationError(
                    f"allowed module prefix must be a dotted module name, not {prefix!r}"
                )
            if prefix.partition(".")[0] == "naq":
                raise ConfigurationError(
                    f"allowed module prefix {prefix!r} names naq's own modules, which never "
                    "run as jobs; remove it from NAQ_ALLOWED_MODULES"
                )
        self.allowed_modules: tuple[str, ...] = prefixes
        self.module_paths: tuple[str, ...] = tuple(module_paths)
        self.cwd: str = os.getcwd() if cwd is None else cwd
        self.project = ProjectCode(self.module_paths, self.cwd)
        """The directories whose modules count as the project's own code."""
        self.ignored_roots: tuple[tuple[str, str], ...] = self.project.ignored_roots
        """``(directory, reason)`` for a working directory that does not count as project
        code (a filesystem root, or one holding the Python installation); log it at start."""
        self._cache: dict[str, Callable[..., Any]] = {}
        self._refused: dict[str, str] = {}

    def resolve(self, path: str) -> Callable[..., Any]:
        """Return the callable ``path`` names, if this worker allows running it.

        Raises :class:`FunctionNotAllowedError` if the allow-list refuses it (saying why and
        how to allow it) and :class:`FunctionNotFoundError` if it cannot be found, is
        malformed, or its module fails to import. Nothing else escapes, whatever ``path``
        holds (``KeyboardInterrupt`` aside), so a worker can always dead-letter the job.
        """
        if not isinstance(path, str):
            raise FunctionNotFoundError(
                f"a function path must be a string, not {type(path).__name__}",
                path=f"<{type(path).__name__}>",
            )
        path = str.__str__(path)  # a plain str, whatever subclass arrived
        func = TASK_REGISTRY.get(path)
        if func is not None:
            return func
        func = self._cache.get(path)
        if func is not None:
            return func
        reason = self._refused.get(path)
        if reason is not None:
            raise self._not_allowed(path, reason)
        try:
            func = self._resolve_uncached(path)
        except FunctionNotAllowedError as exc:
            _remember(self._refused, path, exc.reason)
            raise self._not_allowed(path, exc.reason) from None
        except FunctionNotFoundError:
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the worker must dead-letter
            raise FunctionNotFoundError(
                f"cannot resolve {_shown(path)}: {_error_text(exc)}", path=path
            ) from None
        _remember(self._cache, path, func)
        return func

    def clear_cache(self) -> None:
        """Forget cached resolutions and refusals."""
        self._cache.clear()
        self._refused.clear()

    # -- internals

    @staticmethod
    def _not_allowed(path: str, reason: str) -> FunctionNotAllowedError:
        advice = "It cannot be allowed." if _NAQ_CODE in reason else f"To allow it, {HOW_TO_ALLOW}."
        return FunctionNotAllowedError(
            f"function {_shown(path)} is not allowed to run on this worker: {reason}. {advice}",
            path=path,
            reason=reason,
        )

    @staticmethod
    def _refuse(path: str, reason: str) -> FunctionNotAllowedError:
        """A bare refusal; :meth:`resolve` rewraps it with the full explanation."""
        return FunctionNotAllowedError(reason, path=path, reason=reason)

    def _resolve_uncached(self, path: str) -> Callable[..., Any]:
        try:
            module, qualname = split_function_path(path)
        except ConfigurationError as exc:
            message = str(exc).replace(repr(path), _shown(path), 1)
            raise FunctionNotFoundError(message, path=path) from None
        top = module.partition(".")[0]
        if top == "naq":
            raise self._refuse(path, f"module {module!r} is naq's own code, {_NAQ_CODE}")
        if any(module == p or module.startswith(p + ".") for p in self.allowed_modules):
            source = self._source_if_found(module)
            if source is not None:
                self._refuse_naq_code(path, module, source)
            return self._load(path, module, qualname, source=None)
        if _is_stdlib(top):
            raise self._refuse(
                path,
                f"module {module!r} is part of the Python standard library, which jobs may "
                "not call directly; wrap the call in a function of your own",
            )
        if top == "__main__":
            raise self._refuse(path, "__main__ is not an importable module")
        source = self._module_source(path, module)
        self._refuse_naq_code(path, module, source)
        for _, file in source.files:
            why = self.project.why_not(file)
            if why is not None:
                raise self._refuse(
                    path, f"module {module!r} is not part of this project: {file} is {why}"
                )
        if source.is_namespace:
            raise FunctionNotFoundError(
                f"module {module!r} is a folder without __init__.py (a namespace package), "
                f"which defines no functions (for {_shown(path)})",
                path=path,
            )
        return self._load(path, module, qualname, source=source)

    def _module_source(self, path: str, module: str) -> ModuleSource:
        """The files importing ``module`` would execute, found without importing."""
        try:
            try:
                return find_module_source(module)
            except ModuleNotLocatedError:
                importlib.invalidate_caches()  # the module may have been written since
                return find_module_source(module)
        except ModuleNotLocatedError as exc:
            raise FunctionNotFoundError(f"{exc} (for {_shown(path)})", path=path) from None
        except ModuleWithoutFileError as exc:
            raise self._refuse(path, str(exc)) from None

    @staticmethod
    def _source_if_found(module: str) -> ModuleSource | None:
        try:
            return find_module_source(module)
        except Exception:  # noqa: BLE001 - best effort: the import decides then
            return None

    def _refuse_naq_code(self, path: str, module: str, source: ModuleSource) -> None:
        """Refuse if anything ``module`` comes from is naq's own code (or a copy of it)."""
        places = [file for _, file in source.files] + list(source.package_dirs)
        for place in places:
            if is_naq_code(place):
                raise self._refuse(
                    path,
                    f"module {module!r} is naq's own code ({place}), {_NAQ_CODE}",
                )

    def _load(
        self, path: str, module: str, qualname: str, *, source: ModuleSource | None
    ) -> Callable[..., Any]:
        try:
            loaded = importlib.import_module(module)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import failure is reported
            raise FunctionNotFoundError(
                f"cannot import module {module!r} for {_shown(path)}: {_error_text(exc)}", path=path
            ) from None
        self._check_loaded(path, module, loaded, source)
        found = self._lookup(path, module, loaded, qualname)
        try:
            why = self._why_not_runnable(path, module, qualname, found)
        except Exception as exc:  # noqa: BLE001 - an object that cannot be inspected is refused
            why = f"{_shown(path)} cannot be inspected ({_error_text(exc)})"
        if why is not None or not callable(found):
            raise self._refuse(path, why or f"{_shown(path)} is not callable")
        return found

    def _check_loaded(
        self, path: str, module: str, loaded: object, source: ModuleSource | None
    ) -> None:
        """After importing: every module of the chain is what was checked, and not naq's."""
        parts = module.split(".")
        names = [".".join(parts[: index + 1]) for index in range(len(parts))]
        chain: dict[str, object] = {name: sys.modules.get(name) for name in names}
        chain[module] = loaded
        for name, obj in chain.items():
            for place in _loaded_places(obj):
                if is_naq_code(place):
                    raise self._refuse(
                        path,
                        f"module {name!r} is naq's own code ({place}), {_NAQ_CODE}",
                    )
        if source is None:
            return
        for name, expected in source.files:
            actual = _attribute(chain.get(name), "__file__")
            if not isinstance(actual, str) or real_path(actual) != real_path(expected):
                raise self._refuse(
                    path,
                    f"module {name!r} was loaded from {actual!r}, not from the checked file "
                    f"{expected!r}",
                )

    @staticmethod
    def _lookup(path: str, module: str, loaded: object, qualname: str) -> object:
        found = loaded
        for part in qualname.split("."):
            try:
                found = getattr(found, part)
            except AttributeError:
                raise FunctionNotFoundError(
                    f"module {module!r} has no attribute {qualname!r} (for {_shown(path)})",
                    path=path,
                ) from None
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported as not found
                raise FunctionNotFoundError(
                    f"looking up {qualname!r} in module {module!r} failed (for {_shown(path)}): "
                    f"{_error_text(exc)}",
                    path=path,
                ) from None
        return found

    @staticmethod
    def _why_not_runnable(path: str, module: str, qualname: str, found: object) -> str | None:
        """``None`` if ``found`` is a function defined at ``module:qualname``, else why not."""
        if isinstance(found, types.ModuleType) or not callable(found):
            return f"{_shown(path)} is a {type(found).__name__}, not a function"
        owner = getattr(found, "__self__", None)
        if inspect.ismethod(found) and not isinstance(owner, type):
            return f"{_shown(path)} is a method bound to an instance"
        target = found.__func__ if inspect.ismethod(found) else found
        defined_module = getattr(target, "__module__", None)
        defined_name = getattr(target, "__qualname__", None)
        plain = type(defined_module) is str and type(defined_name) is str
        if not plain or (defined_module, defined_name) != (module, qualname):
            where = f"{defined_module}:{defined_name}" if plain else "elsewhere"
            return (
                f"{_shown(path)} is {where} (imported into {module!r}, not defined there); use "
                "the path where it is defined"
            )
        return None


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    """Store ``key`` in a resolver cache, starting over when hostile input has filled it."""
    if len(cache) >= _REMEMBERED_PATHS:
        cache.clear()
    cache[key] = value
