"""Function paths (``"module:qualname"``), the ``@task`` registry and the worker allow-list.

A job names its function by path, and a worker turns that path back into a callable with a
:class:`FunctionResolver`. Because a path is chosen by whoever can publish to the queue, the
resolver only runs functions the worker's operator has allowed, in this order:

1. functions registered with :func:`task` (``@naq.task``);
2. functions in modules matching a prefix of ``allowed_modules`` (``NAQ_ALLOWED_MODULES``);
3. never the standard library, ``builtins`` or naq's own internals;
4. functions in modules whose file lies under the worker's directory or a ``--module-path``
   directory, and not in an installed-packages directory or the Python installation;
5. nothing else.

Deciding never imports the module: importing runs code, so only allowed modules are imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar, overload

from naq.errors import ConfigurationError, NaqException, SerializationError

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
_INSTALLED_DIR_NAMES = frozenset({"site-packages", "dist-packages"})


class FunctionNotAllowedError(NaqException):
    """The worker's allow-list refuses to run the function a job names."""

    def __init__(self, message: str, *, path: str, reason: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason or message


class FunctionNotFoundError(NaqException):
    """The function a job names cannot be found: its module or attribute is missing."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


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
    found: object = loaded
    for part in qualname.split("."):
        found = getattr(found, part, _MISSING)
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
    without a module, functions defined in ``__main__``, and functions that are not what
    their path resolves to in this process.
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
        raise SerializationError(
            f"function {qualname!r} is defined in __main__ (the script being run), which a "
            "worker cannot import by name; move it into a module (for example tasks.py) and "
            "import it from your script"
        )
    _check_round_trip(func, module, qualname)
    return f"{module}:{qualname}"


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


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _is_under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it (both already passed through :func:`_real`)."""
    if path == root:
        return True
    return path.startswith(root if root.endswith(os.sep) else root + os.sep)


def _is_stdlib(top: str) -> bool:
    return top == "builtins" or top in sys.stdlib_module_names or top in sys.builtin_module_names


class FunctionResolver:
    """Turn job function paths into callables, running only what the worker allows.

    ``allowed_modules`` are module prefixes (``"myapp"`` allows ``myapp`` and ``myapp.x``
    but not ``myapplication``); ``module_paths`` and ``cwd`` (default: the current directory
    at construction) are the directories whose modules count as the project's own code.
    Resolutions are cached.
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
        self.allowed_modules: tuple[str, ...] = prefixes
        self.module_paths: tuple[str, ...] = tuple(module_paths)
        self.cwd: str = os.getcwd() if cwd is None else cwd
        self._roots = tuple(_real(path) for path in (self.cwd, *self.module_paths))
        self._prefixes = tuple(
            {
                _real(prefix)
                for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
            }
        )
        scheme_paths = sysconfig.get_paths()
        self._python_dirs = tuple(
            {
                _real(scheme_paths[key])
                for key in ("stdlib", "platstdlib", "purelib", "platlib")
                if key in scheme_paths
            }
        )
        self._cache: dict[str, Callable[..., Any]] = {}
        self._refused: dict[str, str] = {}

    def resolve(self, path: str) -> Callable[..., Any]:
        """Return the callable ``path`` names, if this worker allows running it.

        Raises :class:`FunctionNotAllowedError` if the allow-list refuses it (saying why and
        how to allow it) and :class:`FunctionNotFoundError` if it cannot be found or its
        module fails to import.
        """
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
            self._refused[path] = exc.reason
            raise self._not_allowed(path, exc.reason) from None
        self._cache[path] = func
        return func

    def clear_cache(self) -> None:
        """Forget cached resolutions and refusals."""
        self._cache.clear()
        self._refused.clear()

    # -- internals

    @staticmethod
    def _not_allowed(path: str, reason: str) -> FunctionNotAllowedError:
        return FunctionNotAllowedError(
            f"function {path!r} is not allowed to run on this worker: {reason}. "
            f"To allow it, {HOW_TO_ALLOW}.",
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
            raise FunctionNotFoundError(str(exc), path=path) from None
        top = module.partition(".")[0]
        if any(module == p or module.startswith(p + ".") for p in self.allowed_modules):
            return self._load(path, module, qualname, expected_file=None)
        if _is_stdlib(top):
            raise self._refuse(
                path,
                f"module {module!r} is part of the Python standard library, which jobs may "
                "not call directly; wrap the call in a function of your own",
            )
        if top == "__main__":
            raise self._refuse(path, "__main__ is not an importable module")
        if top == "naq":
            raise self._refuse(path, "naq's own internals cannot be run as jobs")
        files = self._module_files(path, module)
        for file in files:
            why = self._why_not_project_file(file)
            if why is not None:
                raise self._refuse(
                    path, f"module {module!r} is not part of this project: {file} is {why}"
                )
        return self._load(path, module, qualname, expected_file=files[-1] if files else None)

    def _module_files(self, path: str, module: str) -> list[str]:
        """The files that importing ``module`` would execute, found without importing."""
        try:
            return self._find_module_files(path, module)
        except FunctionNotFoundError:
            importlib.invalidate_caches()  # the module may have been written since
            return self._find_module_files(path, module)

    def _find_module_files(self, path: str, module: str) -> list[str]:
        files: list[str] = []
        parts = module.split(".")
        search: list[str] | None = None
        for index in range(len(parts)):
            name = ".".join(parts[: index + 1])
            loaded = sys.modules.get(name)
            if loaded is not None:
                file = getattr(loaded, "__file__", None)
                if isinstance(file, str):
                    files.append(file)
                elif getattr(loaded, "__path__", None) is None:
                    raise self._refuse(path, f"module {name!r} has no source file")
                search_path = getattr(loaded, "__path__", None)
                search = None if search_path is None else list(search_path)
            else:
                try:
                    if index == 0:
                        spec = importlib.util.find_spec(name)  # top level: imports nothing
                    else:
                        spec = importlib.machinery.PathFinder.find_spec(name, search)
                except (ImportError, ValueError) as exc:
                    raise FunctionNotFoundError(
                        f"cannot find module {name!r} for {path!r}: {exc}", path=path
                    ) from None
                if spec is None:
                    raise FunctionNotFoundError(
                        f"cannot find module {name!r} for {path!r}: no such module on "
                        "sys.path (is --module-path set?)",
                        path=path,
                    )
                if spec.has_location and spec.origin is not None:
                    files.append(spec.origin)
                elif spec.submodule_search_locations is None:
                    raise self._refuse(
                        path, f"module {name!r} is not a file ({spec.origin or 'no origin'})"
                    )
                locations = spec.submodule_search_locations
                search = None if locations is None else list(locations)
            if index < len(parts) - 1 and search is None:
                raise FunctionNotFoundError(
                    f"cannot find module {module!r} for {path!r}: {name!r} is not a package",
                    path=path,
                )
        return files

    def _why_not_project_file(self, file: str) -> str | None:
        """``None`` if ``file`` is the project's own code, else why it is not."""
        real = _real(file)
        if _INSTALLED_DIR_NAMES.intersection(real.split(os.sep)):
            return "inside an installed-packages directory (site-packages)"
        for directory in self._python_dirs:
            if _is_under(real, directory):
                return f"inside the Python installation ({directory})"
        roots = [root for root in self._roots if _is_under(real, root)]
        if not roots:
            places = ", ".join(repr(root) for root in self._roots)
            return f"outside the worker's directory and module paths ({places})"
        for root in roots:
            # A prefix inside the root is a virtualenv within the project (./.venv); a prefix
            # that contains the root (sys.prefix "/usr", project in /usr/src/app) is not.
            inside = [p for p in self._prefixes if _is_under(real, p) and not _is_under(root, p)]
            if not inside:
                return None
        return f"inside the Python installation ({inside[0]})"

    def _load(
        self, path: str, module: str, qualname: str, *, expected_file: str | None
    ) -> Callable[..., Any]:
        try:
            loaded = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported
            raise FunctionNotFoundError(
                f"cannot import module {module!r} for {path!r}: {type(exc).__name__}: {exc}",
                path=path,
            ) from None
        if expected_file is not None:
            actual = getattr(loaded, "__file__", None)
            if not isinstance(actual, str) or _real(actual) != _real(expected_file):
                raise self._refuse(
                    path,
                    f"module {module!r} was loaded from {actual!r}, not from the checked "
                    f"file {expected_file!r}",
                )
        found: object = loaded
        for part in qualname.split("."):
            found = getattr(found, part, _MISSING)
            if found is _MISSING:
                raise FunctionNotFoundError(
                    f"module {module!r} has no attribute {qualname!r} (for {path!r})", path=path
                )
        if isinstance(found, types.ModuleType) or not callable(found):
            raise self._refuse(path, f"{path!r} is a {type(found).__name__}, not a function")
        owner = getattr(found, "__self__", None)
        if inspect.ismethod(found) and not isinstance(owner, type):
            raise self._refuse(path, f"{path!r} is a method bound to an instance")
        target = found.__func__ if inspect.ismethod(found) else found
        defined_in = (getattr(target, "__module__", None), getattr(target, "__qualname__", None))
        if defined_in != (module, qualname):
            where = "{}:{}".format(*defined_in) if all(defined_in) else "elsewhere"
            raise self._refuse(
                path,
                f"{path!r} is {where} (imported into {module!r}, not defined there); use "
                "the path where it is defined",
            )
        return found
