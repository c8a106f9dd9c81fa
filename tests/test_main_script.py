"""Job functions defined in the script being run (``__main__``), as original-naq programs do.

Such a function travels under the script's importable module name (``python hello.py``
sends ``hello:greet``) and a worker started beside the script runs it. A script a worker
could not import by that name, or whose import would run its work again, is refused at the
call with one clear line, and nothing is enqueued.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import JOBS_STREAM, stream_count
from naq.mainscript import unguarded_names, unguarded_work

WAIT = 60.0

GREET = '''
def greet(name):
    """The job: defined in the script itself."""
    return f"hello {name}"
'''

#: Every way of sending a job by function, from inside the script's ``__main__`` guard.
ALL_CALLS = """
async def send_async(queue):
    ids = [(await naq.enqueue(greet, "async", queue_name=queue)).job_id]
    ids.append((await naq.Queue(queue).enqueue(greet, "queue")).job_id)
    await naq.close()
    return ids


if __name__ == "__main__":
    queue = sys.argv[1]
    ids = [naq.enqueue_sync(greet, "sync", queue_name=queue).job_id]
    ids += asyncio.run(send_async(queue))
    ids.append(naq.enqueue_in_sync(0.1, greet, "later", queue_name=queue).job_id)
    ids.append(naq.enqueue_at_sync(datetime.now(UTC), greet, "at", queue_name=queue).job_id)
    batch = naq.enqueue_many_sync([(greet, ("many",), {})], queue_name=queue)
    ids += [job.job_id for job in batch]
    with naq.SyncClient() as client:
        ids.append(client.enqueue(greet, "client", queue_name=queue).job_id)
    schedule = naq.schedule_sync(greet, "cron", cron="0 0 1 1 *", queue_name=queue)
    print("schedule", schedule.function)
    naq.cancel_scheduled_job_sync(schedule.schedule_id)
    for job_id in ids:
        print("result", naq.fetch_job_result_sync(job_id, timeout=30))
"""

HEADER = """
import asyncio
import sys
from datetime import UTC, datetime

import naq
from naq import setup_logging

setup_logging("WARNING")
"""


def write_script(folder: Path, name: str, body: str) -> Path:
    """``folder/name`` holding ``body`` (dedented)."""
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def script_env(nats_url: str) -> dict[str, str]:
    """The test's environment without ``NAQ_*``, pointed at the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env["NAQ_NATS_URL"] = nats_url
    return env


def run_python(args: list[str], cwd: Path, nats_url: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd``; output captured as text."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=script_env(nats_url),
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def worker_beside(tmp_path: Path, nats_url: str) -> Iterator[tuple[Path, str]]:
    """A ``naq worker`` subprocess on a fresh queue, its working directory a fresh folder:
    ``(folder, queue)``; scripts written there are 'beside' it."""
    folder = tmp_path / "project"
    folder.mkdir()
    queue = f"main{os.getpid()}"
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "naq", "worker", queue],
        cwd=folder,
        env=script_env(nats_url),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield folder, queue
    finally:
        proc.kill()
        proc.wait()
        log.close()


# --------------------------------------------------------------------------- end to end


def test_script_enqueues_its_own_function_and_a_worker_beside_it_runs_it(
    worker_beside: tuple[Path, str], nats_url: str, tmp_path: Path
) -> None:
    folder, queue = worker_beside
    write_script(folder, "hello.py", HEADER + GREET + ALL_CALLS)
    done = run_python(["hello.py", queue], folder, nats_url)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert done.returncode == 0, f"{done.stderr}\n--- worker\n{log}"
    lines = done.stdout.splitlines()
    assert lines[0] == "schedule hello:greet"
    results = sorted(line.removeprefix("result ") for line in lines[1:])
    names = ["async", "at", "client", "later", "many", "queue", "sync"]
    assert results == sorted(f"hello {name}" for name in names), done.stdout


def test_script_run_with_dash_m_goes_by_its_module_name(
    worker_beside: tuple[Path, str], nats_url: str
) -> None:
    folder, queue = worker_beside
    (folder / "jobs").mkdir()
    write_script(folder / "jobs", "__init__.py", "")
    guard = """
        if __name__ == "__main__":
            job = naq.enqueue_sync(greet, "module", queue_name=sys.argv[1])
            result = naq.fetch_job_result_sync(job.job_id, timeout=30)
            print(naq.get_job_info_sync(job.job_id).function, result)
    """
    task = GREET.replace("def greet", "@naq.task\ndef greet")  # registered as well: no matter
    write_script(folder / "jobs", "hello.py", HEADER + task + textwrap.dedent(guard))
    done = run_python(["-m", "jobs.hello", queue], folder, nats_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "jobs.hello:greet hello module", done.stdout


# --------------------------------------------------------------------------- refusals

UNGUARDED = (
    HEADER
    + GREET
    + """
naq.enqueue_sync(greet, "again", queue_name=sys.argv[1])
"""
)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("unguarded", "would run its top level again (line 15: naq.enqueue_sync(greet"),
        ("dash-c", "the script has no file (python -c"),
        ("bad-name", "file name 'my-script.py' is not a Python module name"),
        ("stdlib-name", "its name 'turtle' is a standard library module's"),
        ("defined-in-guard", "function 'greet' is defined in __main__ under 'if __name__"),
    ],
)
def test_refused_scripts_give_one_clear_line_and_enqueue_nothing(
    kind: str, expected: str, nats_url: str, tmp_path: Path
) -> None:
    queue = f"refused{kind.replace('-', '')}"
    guarded = HEADER + GREET + 'if __name__ == "__main__":\n    naq.enqueue_sync(greet, "x", '
    guarded += "queue_name=sys.argv[1])\n"
    if kind == "unguarded":
        write_script(tmp_path, "hello.py", UNGUARDED)
        args = ["hello.py", queue]
    elif kind == "dash-c":
        args = ["-c", guarded, queue]
    elif kind == "bad-name":
        write_script(tmp_path, "my-script.py", guarded)
        args = ["my-script.py", queue]
    elif kind == "stdlib-name":
        write_script(tmp_path, "turtle.py", guarded)
        args = ["turtle.py", queue]
    else:
        inside = 'if __name__ == "__main__":\n'
        inside += textwrap.indent(GREET, "    ")
        inside += '    naq.enqueue_sync(greet, "x", queue_name=sys.argv[1])\n'
        write_script(tmp_path, "hello.py", HEADER + inside)
        args = ["hello.py", queue]
    done = run_python(args, tmp_path, nats_url)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("naq.errors.SerializationError: function 'greet' is defined in __main__")
    assert expected in last, last
    assert "move" in last or "outside that block" in last, last
    assert asyncio.run(stream_count(nats_url, JOBS_STREAM, f"naq.jobs.{queue}")) == 0


# --------------------------------------------------------------------------- the syntax rule


@pytest.mark.parametrize(
    "source",
    [
        '"""Docstring."""\nimport os\nfrom naq import setup_logging\n',
        "import logging\nlogging.basicConfig(level=logging.INFO)\n",
        "import os\nos.environ.setdefault('NAQ_JOB_SERIALIZER', 'json')\n",
        "from flask import Flask\napp = Flask(__name__)\nLIMIT: int = 3\nLIMIT += 1\n",
        "try:\n    import ujson as json\nexcept ImportError:\n    import json\n",
        "import sys\nif sys.version_info >= (3, 12):\n    X = 1\nelse:\n    X = 2\n",
        "import naq\n@naq.task(name='greet')\ndef greet(n, d={}):\n"
        "    return naq.enqueue_sync(n)\n",
        "class Job:\n    limit = 3\n    def run(self):\n        main()\n",
        "def main():\n    pass\nif __name__ == '__main__':\n    main()\n",
        "import asyncio\nasync def main():\n    pass\n"
        "if '__main__' == __name__:\n    asyncio.run(main())\n",
    ],
)
def test_definitions_and_setup_are_safe_to_import(tmp_path: Path, source: str) -> None:
    path = write_script(tmp_path, "ok.py", source)
    assert unguarded_work(str(path)) is None


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("def main():\n    pass\nmain()\n", "line 3: main()"),
        ("import asyncio\nasync def go():\n    pass\nasyncio.run(go())\n", "line 4: asyncio.run"),
        ("import naq\njob = naq.enqueue_sync('m:f')\n", "line 2: job = naq.enqueue_sync"),
        ("import naq\nq = naq.Queue('q')\nq.enqueue_many([])\n", "line 3: q.enqueue_many"),
        ("import naq\nnaq.schedule_sync('m:f', cron='* * * * *')\n", "line 2: naq.schedule_sync"),
        ("for i in range(3):\n    print(i)\n", "line 1: for i in range(3):"),
        ("import naq\nwith naq.SyncClient() as c:\n    pass\n", "line 2: with naq.SyncClient"),
        ("if __name__ == '__main__':\n    pass\nelse:\n    main()\n", "line 1: if __name__"),
        ("try:\n    import x\nexcept ImportError:\n    run()\n", "line 1: try:"),
        ("def f(x=main()):\n    pass\n", "line 1: def f(x=main()):"),
        ("import asyncio\nloop = asyncio.new_event_loop()\nloop.run_until_complete(1)\n", "line 3"),
        ("def broken(:\n", "it cannot be read: SyntaxError"),
    ],
)
def test_work_at_top_level_is_found(tmp_path: Path, source: str, line: str) -> None:
    path = write_script(tmp_path, "work.py", source)
    found = unguarded_work(str(path))
    assert found is not None
    assert found.startswith(line), found


def test_names_bound_outside_the_guard(tmp_path: Path) -> None:
    source = """
        import os, json as j
        from naq import task as t
        try:
            import ujson
        except ImportError:
            ujson = None
        A = B = 1
        C: int = 2
        def f(): pass
        class K: pass
        if __name__ == "__main__":
            def hidden(): pass
            D = 3
        else:
            E = 4
    """
    path = write_script(tmp_path, "names.py", source)
    assert unguarded_names(str(path)) == {"os", "j", "t", "ujson", "A", "B", "C", "f", "K", "E"}
