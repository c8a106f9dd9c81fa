"""The worker's allow-list against an attacker who can publish jobs: naq's own code never
runs, the working directory counts only when it is a project directory, and any function
path ends in FunctionNotAllowedError or FunctionNotFoundError (so the job is dead-lettered)."""

from __future__ import annotations

import importlib
import os
import shutil
import site
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests import helpers
from tests.helpers import WAIT, eventually

import naq
import naq.errors
import naq.functions
from naq.errors import ConfigurationError
from naq.functions import FunctionNotAllowedError, FunctionNotFoundError, FunctionResolver
from naq.projectcode import NAQ_PACKAGE_DIR

ROOT = Path(__file__).resolve().parent.parent
RESOLVER_ERRORS = (FunctionNotAllowedError, FunctionNotFoundError)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def write(path: Path, source: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def marker_source(marker: Path) -> str:
    """Module source whose import creates ``marker``, with a harmless function ``run``."""
    return f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        def run():
            return "ran"
    """


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo changes to sys.modules and sys.path made by a test."""
    modules_before = set(sys.modules)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in set(sys.modules) - modules_before:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (``proj_<hex>``), made the current directory, on sys.path."""
    root = tmp_path / unique("proj")
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    return root


# --------------------------------------------------------------------------- the errors


def test_resolver_errors_live_in_naq_errors() -> None:
    for name in ("FunctionNotAllowedError", "FunctionNotFoundError"):
        error = getattr(naq.errors, name)
        assert getattr(naq.functions, name) is error
        assert getattr(naq, name) is error
        assert name in naq.errors.__all__
        assert name in naq.__all__
        assert issubclass(error, naq.errors.NaqException)
    refused = naq.errors.FunctionNotAllowedError("no", path="a:b", reason="why")
    assert (str(refused), refused.path, refused.reason) == ("no", "a:b", "why")
    assert naq.errors.FunctionNotAllowedError("no", path="a:b").reason == "no"
    missing = naq.errors.FunctionNotFoundError("gone", path="a:b")
    assert (str(missing), missing.path) == ("gone", "a:b")


# --------------------------------------------------------------------------- naq's own code


@pytest.mark.parametrize(
    "path",
    [
        "src.naq.deadletter:purge_dead_letters",
        "src.naq.api:purge_dead_letters",
        "src.naq.functions:add_module_paths",
        "src.naq:purge_queue",
    ],
)
def test_naq_checkout_under_the_worker_directory_is_refused(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests run from the repository root, which holds naq's source as src/naq.
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    assert (ROOT / "src" / "naq" / "__init__.py").is_file()
    resolver = FunctionResolver()
    with pytest.raises(FunctionNotAllowedError, match="naq's own code") as info:
        resolver.resolve(path)
    assert "To allow it" not in str(info.value)  # naq's code cannot be allowed
    assert "src.naq" not in sys.modules  # decided without importing the copy


def test_copies_of_naq_are_refused_but_a_package_named_naq_of_your_own_is_not(
    project: Path,
) -> None:
    shutil.copytree(NAQ_PACKAGE_DIR, project / "vendor" / "naq")
    # An edited copy (another version): its __init__.py differs, its module names do not.
    shutil.copytree(NAQ_PACKAGE_DIR, project / "old" / "naq")
    (project / "old" / "naq" / "__init__.py").write_text('"""naq, an older version."""\n')
    # The project's own package that happens to be called naq (its naq integration).
    write(project / "app" / "__init__.py")
    write(project / "app" / "naq" / "__init__.py")
    write(project / "app" / "naq" / "tasks.py", "def run():\n    return 'mine'\n")
    resolver = FunctionResolver(cwd=str(project))
    for path in (
        "vendor.naq.deadletter:purge_dead_letters",
        "vendor.naq.api:purge_dead_letters",
        "old.naq.api:purge_dead_letters",
        "old.naq:purge_queue",
    ):
        with pytest.raises(FunctionNotAllowedError, match="naq's own code"):
            resolver.resolve(path)
    assert "vendor.naq" not in sys.modules
    assert "old.naq" not in sys.modules
    assert resolver.resolve("app.naq.tasks:run")() == "mine"


def test_naq_code_is_refused_even_through_allowed_module_prefixes(project: Path) -> None:
    shutil.copytree(NAQ_PACKAGE_DIR, project / "vendor" / "naq")
    resolver = FunctionResolver(allowed_modules=("vendor",), cwd=str(project))
    with pytest.raises(FunctionNotAllowedError, match="naq's own code"):
        resolver.resolve("vendor.naq.api:purge_dead_letters")
    assert "vendor.naq" not in sys.modules
    for prefix in ("naq", "naq.deadletter"):
        with pytest.raises(ConfigurationError, match=f"prefix '{prefix}' names naq's own"):
            FunctionResolver(allowed_modules=(prefix,))


# --------------------------------------------------------------------------- the working dir


def dotted_from_root(directory: Path) -> str | None:
    """``directory``'s real path as a dotted module name from ``/``, if it is one."""
    parts = Path(os.path.realpath(directory)).parts[1:]
    return ".".join(parts) if all(part.isidentifier() for part in parts) else None


@pytest.fixture
def reachable_from_root() -> Iterator[Path]:
    """A fresh directory whose real path is a dotted module path from ``/`` (in /tmp)."""
    directory = Path(tempfile.mkdtemp(prefix="naq_allowlist_"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_a_worker_standing_in_the_filesystem_root_does_not_allow_the_whole_disk(
    reachable_from_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = reachable_from_root
    package = dotted_from_root(project)
    if package is None:
        pytest.skip(f"{project} is not reachable as a dotted module path from /")
    marker = tmp_path / "imported.txt"
    name = unique("anywhere")
    write(project / f"{name}.py", marker_source(marker))
    monkeypatch.chdir("/")
    monkeypatch.syspath_prepend("/")  # the worker puts its working directory on sys.path
    resolver = FunctionResolver()
    assert resolver.ignored_roots == (("/", "it is the filesystem root"),)
    with pytest.raises(FunctionNotAllowedError, match="'/' is ignored because it is the filesy"):
        resolver.resolve(f"{package}.{name}:run")
    assert not marker.exists()
    # Explicit module paths still count.
    allowed = FunctionResolver(module_paths=(str(project),))
    assert allowed.resolve(f"{package}.{name}:run")() == "ran"


@pytest.mark.parametrize("module_path", ["/", "//", "/tmp/.."])
def test_filesystem_root_as_module_path_is_refused(module_path: str) -> None:
    with pytest.raises(ConfigurationError, match=f"module path '{module_path}' is the filesy"):
        FunctionResolver(module_paths=(module_path,))


def test_working_directory_holding_the_python_installation_is_ignored(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like cwd /usr with Python in /usr, or the home directory holding ~/.pyenv.
    monkeypatch.setattr(sys, "base_prefix", str(project / "python"))
    (project / "python").mkdir()
    marker = tmp_path / "imported.txt"
    name = unique("stray")
    write(project / f"{name}.py", marker_source(marker))
    resolver = FunctionResolver(cwd=str(project))
    ((directory, reason),) = resolver.ignored_roots
    assert directory == str(project)
    assert reason.startswith("it contains the Python installation")
    with pytest.raises(FunctionNotAllowedError, match="contains the Python installation"):
        resolver.resolve(f"{name}:run")
    assert not marker.exists()
    assert FunctionResolver(module_paths=(str(project),)).resolve(f"{name}:run")() == "ran"


def test_working_directory_holding_site_packages_is_ignored(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = project / "lib" / "site-packages"
    site_dir.mkdir(parents=True)
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_dir)])
    marker = tmp_path / "imported.txt"
    name = unique("stray")
    write(project / f"{name}.py", marker_source(marker))
    resolver = FunctionResolver(cwd=str(project))
    assert [reason for _, reason in resolver.ignored_roots] == [
        f"it contains the installed-packages directory {os.path.realpath(site_dir)}"
    ]
    with pytest.raises(FunctionNotAllowedError, match="installed-packages directory"):
        resolver.resolve(f"{name}:run")
    assert not marker.exists()


def test_the_projects_own_virtualenv_does_not_disqualify_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = project / ".venv"
    site_dir = venv / "lib" / "python3.11" / "site-packages"
    site_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "exec_prefix", str(venv))
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_dir)])
    name = unique("jobs")
    write(project / f"{name}.py", "def run():\n    return 'ok'\n")
    resolver = FunctionResolver(cwd=str(project))
    assert resolver.ignored_roots == ()
    assert resolver.resolve(f"{name}:run")() == "ok"


# --------------------------------------------------------------------------- namespace packages


def test_paths_through_folders_without_init_py(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = unique("nsdir")
    write(project / top / "sub" / "mod.py", "def func():\n    return 'namespace'\n")
    write(project / top / "sub" / "broken.py", "raise RuntimeError('boom at import')\n")
    resolver = FunctionResolver(cwd=str(project))
    assert resolver.resolve(f"{top}.sub.mod:func")() == "namespace"
    with pytest.raises(FunctionNotFoundError, match="has no attribute 'nope'"):
        resolver.resolve(f"{top}.sub.mod:nope")
    with pytest.raises(FunctionNotFoundError, match=r"without __init__\.py"):
        resolver.resolve(f"{top}.sub:mod")
    with pytest.raises(FunctionNotFoundError, match="boom at import"):
        resolver.resolve(f"{top}.sub.broken:func")
    with pytest.raises(FunctionNotFoundError, match="cannot find module"):
        resolver.resolve(f"{top}.sub.missing:func")

    outside = tmp_path / "outside"
    marker = tmp_path / "imported.txt"
    other = unique("nsout")
    write(outside / other / "deep" / "mod.py", marker_source(marker))
    monkeypatch.syspath_prepend(str(outside))
    with pytest.raises(FunctionNotAllowedError, match="outside the worker's directory"):
        resolver.resolve(f"{other}.deep.mod:run")
    assert not marker.exists()


# --------------------------------------------------------------------------- hostile paths

HOSTILE_MODULES = {
    "hx_good.py": "def run():\n    return 'ran'\n",
    "hx_boom.py": "raise RuntimeError('boom at import')\n",
    "hx_exits.py": "import sys\nsys.exit(3)\n",
    "hx_lazy.py": """
        import sys

        def __getattr__(name):
            if name == "bye":
                sys.exit(4)
            raise ValueError(f"lazy {name}")
    """,
    "hx_recur.py": "def __getattr__(name):\n    return __getattr__(name)\n",
    "hx_props.py": """
        class Meta(type):
            @property
            def boom(cls):
                raise RuntimeError("property boom")


        class Odd(metaclass=Meta):
            pass


        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("no str")


        class Raises:
            def __getattr__(self, name):
                raise Unprintable()


        raises = Raises()


        class EqualsAnything(str):
            def __eq__(self, other):
                return True

            def __ne__(self, other):
                return False

            __hash__ = str.__hash__


        class Weird:
            @property
            def __class__(self):
                raise RuntimeError("no class")

            def __call__(self):
                return "weird"


        weird = Weird()


        class Impostor:
            __module__ = EqualsAnything("elsewhere")
            __qualname__ = EqualsAnything("elsewhere")

            def __call__(self):
                return "impostor"


        impostor = Impostor()
    """,
    "hx_swap.py": """
        import sys


        class Hostile:
            def __getattr__(self, name):
                raise RuntimeError("no " + name)


        sys.modules[__name__] = Hostile()
    """,
    "hx_ns/sub/mod.py": "def func():\n    return 'ns'\n",
    "hx_ns/sub/broken.py": "raise ImportError('broken')\n",
    "hx_pkg/__init__.py": "raise RuntimeError('package boom')\n",
    "hx_pkg/mod.py": "def run():\n    return 'unreachable'\n",
    "hx_nsnaq/naq/README": "a folder named naq that is not naq\n",
}
MODULE_NAMES = [
    "hx_good", "hx_boom", "hx_exits", "hx_lazy", "hx_recur", "hx_props", "hx_ns",
    "hx_ns.sub", "hx_ns.sub.mod", "hx_ns.sub.broken", "hx_ns.sub.missing", "hx_pkg",
    "hx_pkg.mod", "hx_nsnaq.naq", "hx_good.run", "os", "builtins", "naq", "naq.functions",
    "src", "src.naq", "src.naq.api", "__main__", "tests.jobs", "a..b", "", ".", "é", "\x00",
]  # fmt: skip
QUALNAMES = [
    "run", "func", "boom", "bye", "Odd.boom", "Odd", "weird", "impostor", "raises",
    "raises.x", "anything", "__getattr__", "__class__", "__init__", "__dict__", "__spec__",
    "__loader__", "mro", "run.__call__", "run.__globals__", "x.y", "", "1", "a b",
]  # fmt: skip

EXPLICIT_HOSTILE_PATHS = [
    "",
    ":",
    "::",
    "a..b:c",
    "a:b..c",
    ".a:b",
    "a\x00b:c",
    "hx_good:run\x00",
    "é:ñ",
    "ｏｓ:system",
    "x" * 5000,
    "a" * 2500 + ":" + "b" * 2499,
    ".".join(["a"] * 1000) + ":f",
    "hx_ns.sub.mod:func",
    "hx_ns.sub:mod",
    "hx_ns:sub",
    "hx_ns.sub.broken:func",
    "hx_boom:run",
    "hx_exits:run",
    "hx_lazy:anything",
    "hx_lazy:bye",
    "hx_lazy.sub:run",
    "hx_recur:anything",
    "hx_props:Odd.boom",
    "hx_props:raises",
    "hx_props:raises.x",
    "hx_props:weird",
    "hx_props:impostor",
    "hx_swap:run",
    "hx_pkg.mod:run",
    "hx_nsnaq.naq:x",
    "src.naq.api:purge_dead_letters",
]


@pytest.fixture(scope="module")
def hostile_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project full of modules that fail in every way, on sys.path for the module."""
    root = tmp_path_factory.mktemp("hostile")
    for relative, source in HOSTILE_MODULES.items():
        write(root / relative, source)
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    sys.path[:0] = [str(root), str(ROOT)]
    yield root
    sys.path[:] = path_before
    for name in set(sys.modules) - modules_before:
        del sys.modules[name]


def resolve_hostile(root: Path, path: str) -> None:
    """Resolve ``path`` on a fresh resolver; anything but the two naq errors fails."""
    resolver = FunctionResolver(cwd=str(root))
    try:
        func = resolver.resolve(path)
    except RESOLVER_ERRORS as exc:
        assert exc.path == path
        assert str(exc)
    else:  # only what the hostile project itself defines may come back
        assert callable(func)
        home = sys.modules[func.__module__].__file__
        assert home is not None
        assert Path(home).resolve().is_relative_to(root.resolve())


@pytest.mark.parametrize("path", EXPLICIT_HOSTILE_PATHS)
def test_hostile_paths_only_raise_the_resolver_errors(hostile_project: Path, path: str) -> None:
    resolve_hostile(hostile_project, path)
    resolve_hostile(hostile_project, path)  # again, with whatever the first one imported


def test_hostile_paths_fail_for_the_right_reason(hostile_project: Path) -> None:
    resolver = FunctionResolver(cwd=str(hostile_project))
    assert resolver.resolve("hx_ns.sub.mod:func")() == "ns"
    for path, error, words in [
        ("hx_exits:run", FunctionNotFoundError, "SystemExit: 3"),
        ("hx_lazy:anything", FunctionNotFoundError, "ValueError: lazy anything"),
        ("hx_lazy:bye", FunctionNotFoundError, "SystemExit: 4"),
        ("hx_props:Odd.boom", FunctionNotFoundError, "RuntimeError: property boom"),
        ("hx_props:raises.x", FunctionNotFoundError, "Unprintable: (unprintable)"),
        ("hx_props:weird", FunctionNotAllowedError, "cannot be inspected"),
        ("hx_props:impostor", FunctionNotAllowedError, "elsewhere"),
        ("hx_swap:run", FunctionNotAllowedError, "not from the checked file"),
        ("hx_pkg.mod:run", FunctionNotFoundError, "package boom"),
        ("x" * 5000, FunctionNotFoundError, "(5000 chars)"),
    ]:
        with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
            resolver.resolve(path)


class HostileStr(str):
    """A str whose hash, equality and str() all raise."""

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __str__(self) -> str:
        raise RuntimeError("str")


def test_non_string_paths_are_not_found(hostile_project: Path) -> None:
    resolver = FunctionResolver(cwd=str(hostile_project))
    for value in (None, 42, b"hx_good:run", ["hx_good:run"]):
        with pytest.raises(FunctionNotFoundError, match="must be a string"):
            resolver.resolve(value)  # type: ignore[arg-type]
    assert resolver.resolve(HostileStr("hx_good:run"))() == "ran"
    with pytest.raises(FunctionNotFoundError, match="cannot find module 'hx_missing'"):
        resolver.resolve(HostileStr("hx_missing:run"))


_lengths = st.integers(min_value=1, max_value=5000)
HOSTILE_PATHS = st.one_of(
    st.text(max_size=80),
    st.builds(
        "{}:{}".format,
        st.sampled_from(MODULE_NAMES) | st.text(max_size=20),
        st.sampled_from(QUALNAMES) | st.text(max_size=20),
    ),
    st.builds(lambda char, count: char * count, st.characters(), _lengths),
    st.builds(
        lambda module, count, sep: f"{module}{sep}{'x' * count}",
        st.sampled_from(MODULE_NAMES),
        _lengths,
        st.sampled_from([":", ".", ":a."]),
    ),
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=HOSTILE_PATHS)
def test_resolve_raises_only_the_resolver_errors_for_any_string(
    hostile_project: Path, path: str
) -> None:
    resolve_hostile(hostile_project, path)


# --------------------------------------------------------------------------- a live worker


async def test_live_worker_dead_letters_naq_code_and_purges_nothing(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # a worker started in a checkout that holds src/naq
    seed, q = unique("allow-seed"), unique("allow-naq")
    async with helpers.running_worker([seed, q], nats_url):
        planted = await naq.enqueue("os:system", "true", queue_name=seed, nats_url=nats_url)
        with pytest.raises(naq.JobExecutionError):
            await naq.fetch_job_result(planted.job_id, timeout=WAIT, nats_url=nats_url)
        assert os.getcwd() == str(ROOT)
        queue = naq.Queue(q, nats_url=nats_url)
        try:
            # One message would have purged every dead letter of every queue.
            purge = await queue.enqueue("src.naq.api:purge_dead_letters", nats_url=nats_url)
            low_level = await queue.enqueue("src.naq.deadletter:purge_dead_letters")
        finally:
            await queue.close()
        for job in (purge, low_level):
            with pytest.raises(naq.JobExecutionError, match="naq's own code"):
                await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

        async def two_dead_letters() -> list[naq.DeadLetter] | None:
            found = await naq.list_dead_letters(q, nats_url=nats_url)
            return found if len(found) >= 2 else None

        entries = await eventually(two_dead_letters)
    assert sorted(entry.job_id or "" for entry in entries) == sorted(
        [purge.job_id, low_level.job_id]
    )
    for entry in entries:
        assert entry.kind == "refused"
        assert "naq's own code" in entry.reason
    (kept,) = await naq.list_dead_letters(seed, nats_url=nats_url)
    assert kept.job_id == planted.job_id
    for job in (purge, low_level):
        assert await naq.get_job_status(job.job_id, nats_url=nats_url) == naq.JobStatus.DEAD
    assert "src.naq" not in sys.modules
