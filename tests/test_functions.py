"""Tests for naq.functions: function paths, the @task registry and the worker allow-list."""

from __future__ import annotations

import functools
import importlib
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from naq.errors import ConfigurationError, NaqException, SerializationError
from naq.functions import (
    HOW_TO_ALLOW,
    TASK_REGISTRY,
    FunctionNotAllowedError,
    FunctionNotFoundError,
    FunctionResolver,
    add_module_paths,
    function_path,
    split_function_path,
    task,
)

# --------------------------------------------------------------------------- helpers


def plain(x: int) -> int:
    return x + 1


def other(x: int) -> int:
    return x * 2


class Klass:
    @staticmethod
    def static(x: int) -> int:
        return x

    @classmethod
    def cm(cls, x: int) -> int:
        return x

    def method(self) -> None:
        pass


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo changes to sys.modules, sys.path and the task registry made by a test."""
    modules_before = set(sys.modules)
    registry_before = dict(TASK_REGISTRY)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in set(sys.modules) - modules_before:
        del sys.modules[name]
    TASK_REGISTRY.clear()
    TASK_REGISTRY.update(registry_before)
    importlib.invalidate_caches()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def write_module(directory: Path, dotted: str, source: str) -> Path:
    """Write module ``dotted`` (creating package ``__init__`` files) under ``directory``."""
    parts = dotted.split(".")
    folder = directory
    for package in parts[:-1]:
        folder = folder / package
        folder.mkdir(parents=True, exist_ok=True)
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{parts[-1]}.py"
    file.write_text(textwrap.dedent(source))
    return file


def marker_source(marker: Path) -> str:
    """Module source whose import creates ``marker``, with a harmless function ``run``."""
    return f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        def run():
            return "ran"
    """


# --------------------------------------------------------------------------- function_path


def test_plain_function_path() -> None:
    assert function_path(plain) == "test_functions:plain"


def test_static_and_class_methods_and_classes() -> None:
    assert function_path(Klass.static) == "test_functions:Klass.static"
    assert function_path(Klass.cm) == "test_functions:Klass.cm"
    assert function_path(Klass) == "test_functions:Klass"


def test_builtin_function_path() -> None:
    assert function_path(len) == "builtins:len"


def test_refuses_lambda() -> None:
    with pytest.raises(SerializationError, match=r"lambda .* worker cannot import it"):
        function_path(lambda: None)


def test_refuses_local_function() -> None:
    def local() -> None:
        pass

    with pytest.raises(SerializationError, match="defined inside another function"):
        function_path(local)


def test_refuses_main_function() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def job():\n    pass\n", namespace)
    with pytest.raises(SerializationError, match=r"defined in __main__ .* cannot import"):
        function_path(namespace["job"])


def test_refuses_non_callable() -> None:
    with pytest.raises(ConfigurationError) as info:
        function_path(42)
    assert str(info.value) == "func must be a callable or a 'module:qualname' string, not int"


def test_refuses_bound_methods() -> None:
    with pytest.raises(SerializationError, match="bound to a Klass instance"):
        function_path(Klass().method)
    with pytest.raises(SerializationError, match="bound to a list instance"):
        function_path([].append)


def test_refuses_partial_and_callable_objects() -> None:
    with pytest.raises(SerializationError, match=r"functools\.partial"):
        function_path(functools.partial(plain, 1))

    class Call:
        def __call__(self) -> None:
            pass

    with pytest.raises(SerializationError, match="has no __qualname__"):
        function_path(Call())


def test_refuses_function_not_found_at_its_path() -> None:
    renamed = types.FunctionType(plain.__code__, plain.__globals__, "plain")
    renamed.__qualname__ = "no_such_function"
    with pytest.raises(SerializationError, match="is not importable as 'test_functions:"):
        function_path(renamed)
    copy = types.FunctionType(plain.__code__, plain.__globals__, "plain")
    copy.__qualname__ = "plain"
    with pytest.raises(SerializationError, match="refers to a different object"):
        function_path(copy)


@pytest.mark.parametrize("path", ["os:system", "a.b.c:D.e", "_x:_y", "pkg9.mod:f1"])
def test_valid_string_paths_are_returned(path: str) -> None:
    assert function_path(path) == path


@pytest.mark.parametrize(
    "path", ["os.system", "a:b:c", "1a:b", "a:", ":b", "a..b:c", "a:b.", "a b:c", "", "a:b-c"]
)
def test_invalid_string_paths_are_refused(path: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid function path"):
        function_path(path)


def test_split_function_path() -> None:
    assert split_function_path("a.b:C.d") == ("a.b", "C.d")


# --------------------------------------------------------------------------- @task


def test_task_decorator_forms() -> None:
    assert task(plain) is plain
    assert TASK_REGISTRY["test_functions:plain"] is plain
    assert task()(other) is other
    assert TASK_REGISTRY["test_functions:other"] is other
    assert task(name="double")(other) is other
    assert TASK_REGISTRY["double"] is other
    assert function_path("double") == "double"
    assert function_path(other) == "test_functions:other"


def test_task_alias_conflict() -> None:
    task(name="dup")(plain)
    task(name="dup")(plain)  # same function again is fine
    with pytest.raises(ConfigurationError, match="already registered"):
        task(name="dup")(other)


def test_task_refuses_unsendable() -> None:
    with pytest.raises(SerializationError, match="lambda"):
        task(lambda: None)

    def local() -> None:
        pass

    with pytest.raises(SerializationError, match="defined inside another function"):
        task(local)


# --------------------------------------------------------------------------- resolver


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory, made the current directory and put on sys.path."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.mark.parametrize(
    "path",
    [
        "os:system",
        "subprocess:run",
        "builtins:eval",
        "shutil:rmtree",
        "importlib:import_module",
        "os.path:join",
        "__main__:main",
    ],
)
def test_resolver_refuses_stdlib_and_builtins(project: Path, path: str) -> None:
    resolver = FunctionResolver(cwd=str(project))
    with pytest.raises(FunctionNotAllowedError) as info:
        resolver.resolve(path)
    message = str(info.value)
    assert message.startswith(f"function {path!r} is not allowed to run on this worker: ")
    assert HOW_TO_ALLOW in message
    assert isinstance(info.value, NaqException)


@pytest.mark.parametrize(
    "path", ["naq.server:EmbeddedServer", "naq.functions:function_path", "naq:purge_queue"]
)
def test_resolver_refuses_naq_without_offering_to_allow_it(project: Path, path: str) -> None:
    with pytest.raises(FunctionNotAllowedError) as info:
        FunctionResolver(cwd=str(project)).resolve(path)
    message = str(info.value)
    assert message.startswith(f"function {path!r} is not allowed to run on this worker: ")
    assert "is naq's own code, which never runs as a job. It cannot be allowed." in message
    assert HOW_TO_ALLOW not in message


def test_resolver_refusal_says_stdlib(project: Path) -> None:
    with pytest.raises(FunctionNotAllowedError, match="Python standard library"):
        FunctionResolver(cwd=str(project)).resolve("subprocess:run")


def test_resolver_refuses_site_packages_under_cwd_without_importing(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = project / ".venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(site))
    marker = tmp_path / "imported.txt"
    name = unique("evil")
    write_module(site, name, marker_source(marker))
    resolver = FunctionResolver(cwd=str(project))
    with pytest.raises(FunctionNotAllowedError, match="site-packages"):
        resolver.resolve(f"{name}:run")
    assert not marker.exists()
    assert name not in sys.modules
    # Refusals are cached and repeat the full explanation.
    with pytest.raises(FunctionNotAllowedError, match="To allow it"):
        resolver.resolve(f"{name}:run")
    assert not marker.exists()


def test_resolver_does_not_run_package_init_of_refused_module(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "elsewhere" / "site-packages"
    site.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(site))
    init_marker = tmp_path / "init.txt"
    sub_marker = tmp_path / "sub.txt"
    package = unique("evilpkg")
    write_module(site, f"{package}.sub", marker_source(sub_marker))
    (site / package / "__init__.py").write_text(marker_source(init_marker))
    resolver = FunctionResolver(cwd=str(project))
    with pytest.raises(FunctionNotAllowedError):
        resolver.resolve(f"{package}.sub:run")
    assert not init_marker.exists()
    assert not sub_marker.exists()
    assert package not in sys.modules


def test_resolver_refuses_module_outside_project(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.syspath_prepend(str(outside))
    marker = tmp_path / "imported.txt"
    name = unique("stray")
    write_module(outside, name, marker_source(marker))
    with pytest.raises(FunctionNotAllowedError, match="outside the worker's directory"):
        FunctionResolver(cwd=str(project)).resolve(f"{name}:run")
    assert not marker.exists()


def test_resolver_allows_module_under_cwd(project: Path) -> None:
    name = unique("jobs")
    write_module(project, f"app.{name}", "def run(x):\n    return x * 3\n")
    resolver = FunctionResolver(cwd=str(project))
    func = resolver.resolve(f"app.{name}:run")
    assert func(2) == 6
    assert resolver.resolve(f"app.{name}:run") is func


def test_resolver_allows_module_paths(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    monkeypatch.syspath_prepend(str(extra))
    name = unique("extra")
    write_module(
        extra,
        name,
        """
        class Tools:
            @staticmethod
            def add(a, b):
                return a + b

            @classmethod
            def name(cls):
                return cls.__name__
        """,
    )
    resolver = FunctionResolver(module_paths=(str(extra),), cwd=str(project))
    assert resolver.resolve(f"{name}:Tools.add")(2, 3) == 5
    assert resolver.resolve(f"{name}:Tools.name")() == "Tools"
    with pytest.raises(FunctionNotAllowedError, match="outside"):
        FunctionResolver(cwd=str(project)).resolve(f"{name}:Tools.add")


def test_resolver_checks_the_attribute(project: Path) -> None:
    name = unique("reexports")
    write_module(
        project,
        name,
        """
        import os
        from os.path import join
        from subprocess import run

        value = 3

        class Obj:
            def method(self):
                pass

        bound = Obj().method
        """,
    )
    resolver = FunctionResolver(cwd=str(project))
    for attribute, reason in [
        ("run", "not defined there"),
        ("join", "not defined there"),
        ("os", "is a module"),
        ("value", "is a int"),
        ("bound", "bound to an instance"),
    ]:
        with pytest.raises(FunctionNotAllowedError, match=reason):
            resolver.resolve(f"{name}:{attribute}")


def test_resolver_not_found(project: Path) -> None:
    resolver = FunctionResolver(cwd=str(project))
    name = unique("missing")
    with pytest.raises(FunctionNotFoundError, match="cannot find module"):
        resolver.resolve(f"{name}:run")
    write_module(project, name, "def run():\n    pass\n")
    with pytest.raises(FunctionNotFoundError, match="has no attribute 'nope'"):
        resolver.resolve(f"{name}:nope")
    assert resolver.resolve(f"{name}:run")() is None
    broken = unique("broken")
    write_module(project, broken, "raise RuntimeError('boom at import')\n")
    with pytest.raises(FunctionNotFoundError, match="RuntimeError: boom at import"):
        resolver.resolve(f"{broken}:run")
    with pytest.raises(FunctionNotFoundError, match="invalid function path"):
        resolver.resolve("not a path")


def test_resolver_allows_registry_entries(project: Path) -> None:
    task(name="triple")(plain)
    resolver = FunctionResolver(cwd=str(project))
    assert resolver.resolve("test_functions:plain") is plain
    assert resolver.resolve("triple") is plain


def test_resolver_allowed_modules_prefix(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "installed"
    outside.mkdir()
    monkeypatch.syspath_prepend(str(outside))
    marker = tmp_path / "myapplication.txt"
    write_module(outside, "myapp.tasks", "def run():\n    return 'myapp'\n")
    write_module(outside, "myapp_root", "def run():\n    return 'root'\n")
    write_module(outside, "myapplication", marker_source(marker))
    for name in ("myapp", "myapp.tasks", "myapplication"):
        sys.modules.pop(name, None)
    resolver = FunctionResolver(allowed_modules=("myapp",), cwd=str(project))
    assert resolver.resolve("myapp.tasks:run")() == "myapp"
    with pytest.raises(FunctionNotAllowedError, match="NAQ_ALLOWED_MODULES"):
        resolver.resolve("myapplication:run")
    with pytest.raises(FunctionNotAllowedError):
        resolver.resolve("myapp_root:run")
    assert not marker.exists()


def test_resolver_rejects_bad_prefix() -> None:
    with pytest.raises(ConfigurationError, match="allowed module prefix"):
        FunctionResolver(allowed_modules=("my app",))


def test_resolver_defaults_cwd(project: Path) -> None:
    assert FunctionResolver().cwd == str(project)


def test_add_module_paths(tmp_path: Path) -> None:
    first = tmp_path / "a"
    second = tmp_path / "b"
    added = add_module_paths([str(first), str(second), str(first)])
    assert added == [str(first), str(second)]
    assert sys.path[:2] == [str(first), str(second)]
    assert add_module_paths([str(second)]) == []


def test_resolver_refuses_python_installation_inside_project(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = project / ".venv"
    lib = venv / "lib"
    lib.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.syspath_prepend(str(lib))
    marker = tmp_path / "imported.txt"
    name = unique("venvmod")
    write_module(lib, name, marker_source(marker))
    with pytest.raises(FunctionNotAllowedError, match="inside the Python installation"):
        FunctionResolver(cwd=str(project)).resolve(f"{name}:run")
    assert not marker.exists()


def test_resolver_allows_project_inside_python_prefix(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like a system Python with sys.prefix "/usr" and the project in /usr/src/app.
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    name = unique("appmod")
    write_module(project, name, "def run():\n    return 'ok'\n")
    assert FunctionResolver(cwd=str(project)).resolve(f"{name}:run")() == "ok"
