"""Which source files count as the project's own code, for the worker's allow-list.

A file is project code when its real path (symlinks resolved) lies under a project
directory, and is not:

- inside an installed-packages directory (a path part named ``site-packages`` or
  ``dist-packages``) or the Python installation (its standard library, or a prefix inside
  the project directory such as ``./.venv``);
- naq's own code: inside the directory of the imported ``naq`` package, or inside any other
  directory named ``naq`` that holds a copy of naq's source (a ``src/naq`` checkout, a
  vendored copy). A copy is recognised by an ``__init__.py`` identical to the imported
  naq's, or by holding at least half of naq's module names.

Project directories are the explicit module paths (``--module-path``; a filesystem root is
refused) and the worker's working directory, which counts only when it looks like a project:
not a filesystem root, not inside a site-packages directory, and not containing the Python
installation (``sys.base_prefix``) or a site-packages directory (the running virtual
environment inside the project, like ``./.venv``, is fine). A working directory that fails
this is ignored, and :attr:`ProjectCode.ignored_roots` says why.
"""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator

from naq.errors import ConfigurationError

__all__ = ["NAQ_PACKAGE_DIR", "ProjectCode", "is_naq_code", "is_under", "real_path"]

_INSTALLED_DIR_NAMES = frozenset({"site-packages", "dist-packages"})


def real_path(path: str) -> str:
    """``path`` made absolute, with symlinks resolved and case normalised."""
    return os.path.normcase(os.path.realpath(path))


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it (both already passed through :func:`real_path`)."""
    if path == root:
        return True
    return path.startswith(root if root.endswith(os.sep) else root + os.sep)


def _is_filesystem_root(real: str) -> bool:
    return os.path.dirname(real) == real


NAQ_PACKAGE_DIR = real_path(os.path.dirname(os.path.abspath(__file__)))
"""The real directory of the imported ``naq`` package."""


def _module_names(directory: str) -> frozenset[str]:
    """Names of the modules (``*.py``) and regular packages directly inside ``directory``."""
    names: set[str] = set()
    with os.scandir(directory) as entries:
        for entry in entries:
            stem, extension = os.path.splitext(entry.name)
            if extension == ".py" and entry.is_file():
                names.add(stem)
            elif entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")):
                names.add(entry.name)
    return frozenset(names - {"__init__", "__main__"})


def _read_init(directory: str) -> bytes:
    with open(os.path.join(directory, "__init__.py"), "rb") as file:
        return file.read()


@functools.cache
def _naq_fingerprint() -> tuple[bytes, frozenset[str]]:
    """The imported naq's ``__init__.py`` bytes and module names."""
    return _read_init(NAQ_PACKAGE_DIR), _module_names(NAQ_PACKAGE_DIR)


def _is_naq_copy(directory: str) -> bool:
    """Whether ``directory`` (real path) is naq's package directory or a copy of it."""
    if directory == NAQ_PACKAGE_DIR:
        return True
    if os.path.basename(directory) != "naq":
        return False
    try:
        init, names = _naq_fingerprint()
        if _read_init(directory) == init:
            return True
        return 2 * len(names & _module_names(directory)) >= len(names)
    except OSError:
        return False


def _ancestors(real: str) -> Iterator[str]:
    """``real`` and each directory above it."""
    while True:
        yield real
        parent = os.path.dirname(real)
        if parent == real:
            return
        real = parent


def is_naq_code(path: str) -> bool:
    """Whether ``path`` (a file or directory) lies inside naq's package or a copy of it."""
    return any(_is_naq_copy(directory) for directory in _ancestors(real_path(path)))


def _existing(paths: Iterable[str]) -> set[str]:
    return {real_path(path) for path in paths if path and os.path.isdir(path)}


class ProjectCode:
    """The directories whose source files count as the project's own code.

    ``module_paths`` always count (a filesystem root raises
    :class:`~naq.errors.ConfigurationError`); ``cwd`` counts only when it looks like a
    project directory (see the module documentation). ``roots`` are the directories used;
    ``ignored_roots`` pairs each directory left out with the reason, for the worker to log.
    """

    def __init__(self, module_paths: Iterable[str], cwd: str) -> None:
        self._prefixes = {
            real_path(prefix)
            for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
        }
        self._base_prefixes = {real_path(sys.base_prefix), real_path(sys.base_exec_prefix)}
        in_virtualenv = sys.prefix != sys.base_prefix
        self._virtualenvs = (
            {real_path(sys.prefix), real_path(sys.exec_prefix)} if in_virtualenv else set()
        )
        scheme = sysconfig.get_paths()
        self._python_dirs = {
            real_path(scheme[key])
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if key in scheme
        }
        self._site_dirs = _existing(
            [
                *(scheme[key] for key in ("purelib", "platlib") if key in scheme),
                *site.getsitepackages(),
                site.getusersitepackages(),
            ]
        )
        roots: list[str] = []
        for path in module_paths:
            if not isinstance(path, str):
                raise ConfigurationError(f"module path must be a string, not {path!r}")
            real = real_path(path)
            if _is_filesystem_root(real):
                raise ConfigurationError(
                    f"module path {path!r} is the filesystem root, which would let jobs run "
                    "any module on the disk; give the project's own directory"
                )
            roots.append(real)
        real_cwd = real_path(cwd)
        why = self._why_not_a_project_dir(real_cwd)
        self.ignored_roots: tuple[tuple[str, str], ...] = () if why is None else ((cwd, why),)
        """``(directory, reason)`` for each directory that does not count as project code."""
        if why is None:
            roots.insert(0, real_cwd)
        self.roots: tuple[str, ...] = tuple(dict.fromkeys(roots))
        """The real paths of the directories whose files count as project code."""

    def _why_not_a_project_dir(self, real: str) -> str | None:
        """``None`` if working directory ``real`` may count as project code, else why not."""
        if _is_filesystem_root(real):
            return "it is the filesystem root"
        for prefix in sorted(self._base_prefixes):
            if is_under(prefix, real):
                return f"it contains the Python installation {prefix}"
        for site_dir in sorted(self._site_dirs):
            if is_under(real, site_dir):
                return f"it is inside the installed-packages directory {site_dir}"
            in_project_env = any(
                is_under(site_dir, env) and is_under(env, real) for env in self._virtualenvs
            )
            if is_under(site_dir, real) and not in_project_env:
                return f"it contains the installed-packages directory {site_dir}"
        return None

    def why_not(self, file: str) -> str | None:
        """``None`` if ``file`` is the project's own code, else why it is not."""
        real = real_path(file)
        if is_naq_code(real):
            return "naq's own code, which never runs as a job"
        if _INSTALLED_DIR_NAMES.intersection(real.split(os.sep)):
            return "inside an installed-packages directory (site-packages)"
        for directory in sorted(self._python_dirs):
            if is_under(real, directory):
                return f"inside the Python installation ({directory})"
        roots = [root for root in self.roots if is_under(real, root)]
        if not roots:
            return f"outside {self.describe_roots()}"
        for root in roots:
            # A prefix inside the root is a virtualenv within the project (./.venv); a prefix
            # that contains the root (sys.prefix "/usr", project in /usr/src/app) is not.
            inside = [p for p in self._prefixes if is_under(real, p) and not is_under(root, p)]
            if not inside:
                return None
        return f"inside the Python installation ({sorted(inside)[0]})"

    def describe_roots(self) -> str:
        """The project directories in words, with any working directory that was ignored."""
        places = ", ".join(map(repr, self.roots)) or "none"
        text = f"the worker's directory and module paths ({places})"
        for directory, reason in self.ignored_roots:
            text += f"; the working directory {directory!r} is ignored because {reason}"
        return text
