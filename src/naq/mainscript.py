"""The importable name of the script being run, for job functions defined in ``__main__``.

A program often defines its job functions in the script it runs and enqueues them from
``if __name__ == "__main__":``. Such a function's module is ``__main__``, a name a worker
cannot import. Like Celery, naq sends it under the script's importable module name instead,
so a worker started beside the script (its working directory, or ``--module-path``) imports
the script as an ordinary module and runs the function:

- ``python -m pkg.mod``: the name is ``pkg.mod`` (``__main__.__spec__.name``);
- ``python path/to/hello.py``: the name is ``hello``, the file's stem, when ``hello`` found on
  ``sys.path`` (normally the script's own directory, ``sys.path[0]``) is that very file.

It is refused (:attr:`ScriptModule.why_not` says why) when a worker could not import the
script by that name (``python -c``, an interactive session or notebook: no file; a file name
that is not a module name, like ``my-script.py``; a name that finds another file, a module
already imported from elsewhere, the standard library or naq) or when importing it would run
the script's work again.

Whether importing is safe is decided by reading the script's syntax once, never by running
it. Importing runs every top-level statement not under ``if __name__ == "__main__":``. These
are accepted there:

- imports, ``def``, ``async def`` and ``class`` (their decorators, defaults and class bodies
  are checked like expressions below), docstrings and ``pass``;
- ``if`` and ``try`` statements whose every branch is accepted (conditional imports), and
  ``if __name__ == "__main__":`` itself, whose body is not run on import (its ``else`` is
  checked);
- assignments and expression statements (``app = Flask(__name__)``,
  ``logging.basicConfig()``, ``setup_logging("INFO")``) unless they contain work: an
  ``await``, or a call of a function the script defines itself (``main()``), or of a name
  that sends jobs or runs an event loop: ``main``, ``run``, ``run_sync``,
  ``run_until_complete``, ``run_forever``, ``delay``, ``apply_async``, ``send_task``, or any
  name starting with ``enqueue`` or ``schedule`` (so ``asyncio.run(...)``,
  ``q.enqueue_sync(...)``, ``naq.schedule_sync(...)`` are refused).

Any other top-level statement (``for``, ``while``, ``with``, ``raise``...) refuses: a worker
importing a script that enqueues on import would enqueue again every time it starts. The
check cannot see through calls into other modules; it covers the shapes programs are written
in, and refuses on doubt rather than accepting.

Decisions are cached for the life of the process: one decision per script, so enqueueing
pays a dictionary look-up.
"""

from __future__ import annotations

import ast
import keyword
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from naq.modulesource import ModuleNotLocatedError, ModuleWithoutFileError, find_module_source
from naq.projectcode import real_path

__all__ = ["GUARD", "ScriptModule", "script_module", "unguarded_names", "unguarded_work"]

_ACTION_NAMES = frozenset(
    {"main", "run", "run_sync", "run_until_complete", "run_forever", "delay", "apply_async"}
    | {"send_task"}
)
_ACTION_PREFIXES = ("enqueue", "schedule")
_SHOWN_SOURCE = 60  # characters of an offending statement quoted in a refusal
GUARD = 'if __name__ == "__main__":'


@dataclass(frozen=True, slots=True)
class ScriptModule:
    """The module name a worker imports the running script by, or why there is none.

    Exactly one of ``name`` and ``why_not`` is set; ``why_not`` is a sentence fragment that
    says what stops a worker and what to write instead.
    """

    name: str | None
    why_not: str = ""
    defines: frozenset[str] = frozenset()
    """Names the script binds at its top level outside the ``__main__`` guard: only those
    exist when a worker imports it."""


_decisions: dict[tuple[int, str | None, str | None], ScriptModule] = {}
_work_by_file: dict[str, str | None] = {}


def script_module() -> ScriptModule:
    """The importable module name of the script being run (``__main__``), decided once."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    file = getattr(main, "__file__", None)
    key = (
        id(main),
        file if isinstance(file, str) else None,
        spec_name if isinstance(spec_name, str) else None,
    )
    decision = _decisions.get(key)
    if decision is None:
        decision = _decide(key[1], key[2])
        _decisions[key] = decision
    return decision


def _decide(file: str | None, spec_name: str | None) -> ScriptModule:
    if file is None:
        return ScriptModule(
            None,
            "the script has no file (python -c, an interactive session or a notebook), so "
            "there is nothing a worker could import",
        )
    path = Path(file)
    if spec_name and spec_name != "__main__":
        name = spec_name
    else:
        name = path.stem if path.suffix == ".py" else path.name
        if not name.isidentifier() or keyword.iskeyword(name) or name == "__main__":
            return ScriptModule(
                None,
                f"its file name {path.name!r} is not a Python module name, so a worker "
                "cannot import it (rename it, e.g. with underscores instead of dashes)",
            )
    why = _why_not_importable(name, file)
    if why is not None:
        return ScriptModule(None, why)
    work = unguarded_work(file)
    if work is not None:
        return ScriptModule(
            None,
            f"a worker importing {path.name} would run its top level again ({work}); put "
            f"the code that does the work under {GUARD!r}",
        )
    return ScriptModule(name, defines=unguarded_names(file))


def _why_not_importable(name: str, file: str) -> str | None:
    """``None`` if importing ``name`` from ``sys.path`` would load ``file``, else why not."""
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return f"its name {name!r} is a standard library module's, which a worker imports instead"
    if top == "naq":
        return f"its name {name!r} is naq's own"
    loaded = sys.modules.get(name)
    loaded_file = getattr(loaded, "__file__", None)
    if loaded is not None and (
        not isinstance(loaded_file, str) or real_path(loaded_file) != real_path(file)
    ):
        return f"another module named {name!r} is already imported here ({loaded_file})"
    try:
        source = find_module_source(name)
    except (ModuleNotLocatedError, ModuleWithoutFileError):
        return (
            f"no module {name!r} is found on sys.path (the script's directory is not on it), "
            "so a worker could not import it either"
        )
    except Exception as exc:  # noqa: BLE001 - any failure to locate it is a refusal
        return f"module {name!r} cannot be located ({type(exc).__name__}: {exc})"
    found = source.files[-1][1] if source.files else None
    if found is None or source.files[-1][0] != name or real_path(found) != real_path(file):
        return f"the name {name!r} finds another file ({found}), not the script"
    return None


# --------------------------------------------------------------------------- the syntax check


def unguarded_work(file: str) -> str | None:
    """The first top-level statement of ``file`` that does work on import (``"line N: ..."``),
    or ``None`` if importing it only defines things (see the module's documentation).

    A file that cannot be read or parsed counts as doing work. Cached per file.
    """
    key = real_path(file)
    if key not in _work_by_file:
        _work_by_file[key] = _find_work(file)
    return _work_by_file[key]


def unguarded_names(file: str) -> frozenset[str]:
    """The names ``file`` binds at its top level outside ``if __name__ == "__main__":``
    (definitions, imports, assignments, also in ``if``/``try`` branches): what a worker
    importing it finds. Empty if the file cannot be read or parsed."""
    try:
        with tokenize.open(file) as handle:
            tree = ast.parse(handle.read(), filename=file)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return frozenset()
    return frozenset(_bound_names(tree.body))


def _bound_names(body: list[ast.stmt]) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                yield alias.asname or alias.name.partition(".")[0]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                yield from (n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If):
            if not _is_main_guard(node.test):
                yield from _bound_names(node.body)
            yield from _bound_names(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            for branch in (
                node.body,
                node.orelse,
                node.finalbody,
                *(h.body for h in node.handlers),
            ):
                yield from _bound_names(branch)


def _find_work(file: str) -> str | None:
    try:
        with tokenize.open(file) as handle:
            source = handle.read()
        tree = ast.parse(source, filename=file)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as exc:
        return f"it cannot be read: {type(exc).__name__}"
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    found = _first_working_statement(tree.body, defined)
    if found is None:
        return None
    text = (ast.get_source_segment(source, found) or type(found).__name__).splitlines()[0]
    if len(text) > _SHOWN_SOURCE:
        text = text[: _SHOWN_SOURCE - 3] + "..."
    return f"line {found.lineno}: {text}"


def _is_main_guard(test: ast.expr) -> bool:
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _first_working_statement(body: list[ast.stmt], defined: set[str]) -> ast.stmt | None:
    for statement in body:
        if _does_work(statement, defined):
            return statement
    return None


def _does_work(node: ast.stmt, defined: set[str]) -> bool:
    if isinstance(node, ast.Import | ast.ImportFrom | ast.Pass):
        return False
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        evaluated = [*node.decorator_list, *node.args.defaults]
        evaluated += [d for d in node.args.kw_defaults if d is not None]
        return any(_calls_work(e, defined) for e in evaluated)
    if isinstance(node, ast.ClassDef):
        evaluated = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
        return any(_calls_work(e, defined) for e in evaluated) or (
            _first_working_statement(node.body, defined) is not None
        )
    if isinstance(node, ast.If):
        if _is_main_guard(node.test):
            return _first_working_statement(node.orelse, defined) is not None
        return _calls_work(node.test, defined) or any(
            _first_working_statement(branch, defined) is not None
            for branch in (node.body, node.orelse)
        )
    if isinstance(node, ast.Try | ast.TryStar):
        branches = [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
        return any(_first_working_statement(b, defined) is not None for b in branches)
    if isinstance(node, ast.Expr | ast.Assign | ast.AnnAssign | ast.AugAssign):
        return node.value is not None and _calls_work(node.value, defined)
    return True


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _calls_work(expression: ast.expr, defined: set[str]) -> bool:
    """Whether evaluating ``expression`` may send jobs or run the program's work."""
    for node in ast.walk(expression):
        if isinstance(node, ast.Await | ast.Yield | ast.YieldFrom):
            return True
        if isinstance(node, ast.Call):
            name = _called_name(node.func)
            if name is not None and (
                name in defined or name in _ACTION_NAMES or name.startswith(_ACTION_PREFIXES)
            ):
                return True
    return False
