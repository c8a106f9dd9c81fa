"""Profile a naq worker draining no-op jobs with py-spy, and print where its time goes.

``python -m benchmarks.profile_worker [--func noop] [-n 40000] [-c 200]`` (needs ``py-spy``:
``.venv/bin/pip install py-spy``; not part of ``make bench``). Samples only the thread
holding the GIL (``--gil``), without pausing the worker (``--nonblocking``), so the worker
runs at about its normal speed. Prints the top lines by own time and the top functions by
inclusive time, as percentages of all samples.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from naq import Queue, setup_logging
from naq.server import EmbeddedServer

from . import jobs
from .common import ROOT, child_env

_LINE = re.compile(r":\d+\)$")
_PREFIXES = (str(ROOT / "src") + "/", str(Path(sys.prefix)) + "/lib/", sys.base_prefix + "/lib/")


def _short(frame: str) -> str:
    for prefix in _PREFIXES:
        frame = frame.replace(prefix, "")
    return frame.replace("python3.11/site-packages/", "").replace("python3.11/", "")


def summarize(raw_file: Path, top: int) -> str:
    """Own-time lines and inclusive-time functions from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for func in {_LINE.sub(")", f) for f in frames}:
            inclusive[func] += n
    out = [f"{total} samples", "", "own time (file:line):"]
    out += [f"{100 * n / total:5.1f}%  {_short(f)}" for f, n in own.most_common(top)]
    out += ["", "inclusive time (function):"]
    out += [f"{100 * n / total:5.1f}%  {_short(f)}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


async def _fill(url: str, func_name: str, n: int) -> None:
    async with Queue("bench-profile", nats_url=url) as queue:
        func = getattr(jobs, func_name)
        await queue.enqueue_many([(func, (i,)) for i in range(n)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--func", default="noop", choices=("noop", "anoop"))
    parser.add_argument("-n", type=int, default=40000)
    parser.add_argument("-c", "--concurrency", type=int, default=200)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--events", action="store_true", help="the worker publishes events")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    setup_logging("WARNING")
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_fill(server.url, args.func, args.n))
        out = Path(tmp) / "stacks.txt"
        worker = [sys.executable, "-m", "benchmarks.worker_proc", "--queue", "bench-profile"]
        worker += ["--concurrency", str(args.concurrency), "--burst", "--expect", str(args.n)]
        worker += ["--uvloop"] if args.uvloop else []
        worker += ["--events"] if args.events else []
        cmd = [spy, "record", "-r", str(args.rate), "--gil", "--nonblocking", "-f", "raw"]
        cmd += ["-o", str(out), "--", *worker]
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env(server.url), capture_output=True)
        if proc.returncode != 0 or not out.exists():
            print(proc.stderr.decode(errors="replace")[-3000:], file=sys.stderr)
            return 1
        print(summarize(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
