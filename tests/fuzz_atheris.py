"""Coverage-guided fuzzing of the decision for one job message, with atheris (libFuzzer).

Run by ``make fuzz`` when atheris installs: ``python tests/fuzz_atheris.py [runs]`` (default
100,000 runs). libFuzzer starts from a corpus of valid envelopes (written to a temporary
directory) and mutates toward new coverage of naq's decoding, validation, signature check
and allow-list; each input is also read as a seed for :mod:`tests.fuzz_inputs`' structured
mutations. Every verdict is checked like in ``tests/test_fuzz.py``: a ``Go`` only for an
allowed function, a ``Refuse`` of a known kind, and never an exception (an exception or a
failed check stops the run with the input that caused it, as libFuzzer does).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import sys
import tempfile
from pathlib import Path

import atheris  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["naq"]):
    from naq.functions import FunctionResolver
    from naq.models import decode_envelope
    from naq.serialization import job_signature_valid, sign_job
    from naq.settings import load_settings
    from naq.worker.decide import decide

from tests import fuzz_inputs as fz  # noqa: E402 - after the instrumented imports

QUEUE = "fuzzq"
SUBJECT = f"naq.queue.{QUEUE}"
KEY = b"atheris-signing-key-of-32-bytes!"
DEFAULT_RUNS = 100_000

PLAIN = load_settings("nats://127.0.0.1:4222")
SIGNED = dataclasses.replace(PLAIN, signing_keys=(KEY,))
PROJECT = FunctionResolver(cwd=str(ROOT))
ALLOWED = fz.allowed_functions()
decided = 0


def _claimed_id(data: bytes) -> str:
    try:
        return decode_envelope(data).id
    except Exception:  # noqa: BLE001 - an undecodable message claims no id
        return ""


def _signed(msg: fz.FuzzedMessage) -> bool:
    return job_signature_valid((KEY,), msg.subject, _claimed_id(msg.data), msg.headers, msg.data)


def check(msg: fz.FuzzedMessage) -> None:
    """Decide about ``msg`` unsigned, then signed, with the project's resolver; raise on a
    wrong verdict."""
    global decided
    headers = dict(msg.headers or {})
    headers["Naq-Signature"] = sign_job(KEY, SUBJECT, _claimed_id(msg.data), headers, msg.data)
    for settings, message, signature_ok in (
        (PLAIN, msg, None),
        (SIGNED, dataclasses.replace(msg, headers=headers), _signed),
    ):
        verdict = decide(message, QUEUE, settings, PROJECT)
        problem = fz.problem_with(verdict, message, QUEUE, ALLOWED, signature_ok)
        if problem is not None:
            raise AssertionError(f"{problem}: {message.data[:300]!r} {message.headers}")
    decided += 1


def test_one_input(data: bytes) -> None:
    """One libFuzzer input: as a message, and as the seed of a structured hostile one."""
    check(fz.FuzzedMessage(data, None, SUBJECT))
    seed = int.from_bytes(data[:8], "little")
    hostile = fz.hostile_message(random.Random(seed), QUEUE, f"a{seed}")
    check(fz.FuzzedMessage(hostile.payload, hostile.headers, SUBJECT))


def write_corpus(folder: Path) -> None:
    """Valid envelopes (and a few mutated ones) for libFuzzer to start from."""
    for number, fn in enumerate((*fz.RUNNABLE, "os:system", "src.naq.functions:sign")):
        body = fz.valid_body(f"seed{number}", QUEUE, fn)
        (folder / f"valid-{number}").write_bytes(fz.json_text(body))
    for hostile in fz.messages(7, 50, QUEUE):
        (folder / f"hostile-{len(list(folder.iterdir()))}").write_bytes(hostile.payload)


def main() -> None:
    """Fuzz for ``argv[1]`` runs (default :data:`DEFAULT_RUNS`)."""
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RUNS
    # one fixed folder, emptied first: libFuzzer exits the process without cleaning up
    corpus = Path(tempfile.gettempdir()) / "naq-atheris-corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir()
    write_corpus(corpus)
    print(f"atheris: {runs} runs from a corpus of {len(list(corpus.iterdir()))} messages")
    args = [sys.argv[0], f"-runs={runs}", "-max_len=4096", "-seed=16", str(corpus)]
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
