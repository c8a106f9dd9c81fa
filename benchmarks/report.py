"""The results table: rows of naq vs raw nats-py values, targets, JSON and Markdown output."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

TargetKind = Literal["min", "max", "min_ratio", "max_ratio", "near_ratio"]


@dataclass(frozen=True)
class Target:
    """``min``/``max``: bound on the naq value; ``min_ratio``/``max_ratio``: bound on
    naq / baseline (raw nats-py, or the row's other baseline); ``near_ratio``: naq within
    ``value`` (a fraction, 0.05 = 5 %) of the baseline either way."""

    kind: TargetKind
    value: float

    def met(self, naq: float | None, raw: float | None) -> bool | None:
        if naq is None or math.isnan(naq):
            return None
        if self.kind == "min":
            return naq >= self.value
        if self.kind == "max":
            return naq <= self.value
        if raw is None or raw <= 0:
            return None
        if self.kind == "max_ratio":
            return naq / raw <= self.value
        if self.kind == "near_ratio":
            return abs(naq / raw - 1) <= self.value
        return naq / raw >= self.value

    def text(self, unit: str, base: str = "raw") -> str:
        if self.kind == "min_ratio":
            return f"≥ {self.value:g}x {base}"
        if self.kind == "max_ratio":
            return f"≤ {self.value:g}x {base}"
        if self.kind == "near_ratio":
            return f"within ±{self.value * 100:g} % of {base}"
        sign = "≥" if self.kind == "min" else "≤"
        return f"{sign} {fmt(self.value, unit)} {unit}"


@dataclass
class Row:
    """One line of the table."""

    key: str
    label: str
    unit: str
    naq: float | None
    raw: float | None = None
    targets: list[Target] = field(default_factory=list)
    note: str = ""
    error: str = ""  # the measurement is not valid (e.g. results were not stored)
    #: What the baseline column holds: raw nats-py, or (e.g. ``"plain naq"``) a naq number
    #: without the feature the row measures; shown next to the baseline value.
    base: str = "raw"

    @property
    def ratio(self) -> float | None:
        if self.naq is None or self.raw is None or self.raw == 0 or math.isnan(self.naq):
            return None
        return self.naq / self.raw

    @property
    def passed(self) -> bool | None:
        if not self.targets:
            return None
        results = [t.met(self.naq, self.raw) for t in self.targets]
        if any(r is None for r in results):
            return None
        return all(results)

    def target_text(self) -> str:
        return " and ".join(t.text(self.unit, self.base) for t in self.targets) or "-"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["passed"] = self.passed
        data["target"] = self.target_text()
        return data


def fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit in ("jobs/s", "msgs/s", "jobs"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:.1f}"


def _ratio(row: Row) -> str:
    return "-" if row.ratio is None else f"{row.ratio:.2f}x"


def _verdict(row: Row) -> str:
    if row.error:
        return "ERROR"
    return {True: "PASS", False: "FAIL", None: "-"}[row.passed]


HEADERS = ("metric", "naq", "raw nats-py", "naq / raw", "target", "result")


def cells(row: Row) -> tuple[str, ...]:
    unit = f" {row.unit}"
    base = f" ({row.base})" if row.base != "raw" else ""
    naq = fmt(row.naq, row.unit)
    raw = fmt(row.raw, row.unit)
    return (
        row.label,
        naq + (unit if naq != "-" else ""),
        raw + (unit + base if raw != "-" else ""),
        _ratio(row),
        row.target_text(),
        _verdict(row),
    )


def print_table(rows: list[Row], title: str, console: Console | None = None) -> None:
    table = Table(title=title)
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("metric", "target") else "right")
    for row in rows:
        verdict = _verdict(row)
        style = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold red"}.get(verdict, "")
        values = cells(row)
        table.add_row(*values[:-1], f"[{style}]{verdict}[/]" if style else verdict)
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: don't squeeze the table into 80 columns
            console = Console(width=160)
    console.print(table)
    console.print(summary(rows), highlight=False)
    for line in footnotes(rows):
        console.print(line, highlight=False, markup=False)


def summary(rows: list[Row]) -> str:
    """``targets met: 5 of 9 (failed: ...)``."""
    judged = [r for r in rows if r.targets]
    met = [r for r in judged if r.passed and not r.error]
    missed = [r.key for r in judged if r not in met]
    text = f"targets met: {len(met)} of {len(judged)}"
    return text + (f" (missed: {', '.join(missed)})" if missed else "")


def footnotes(rows: list[Row], notes: bool = True) -> list[str]:
    """One line per row with an error (and, with ``notes``, per row with a note)."""
    lines: list[str] = []
    for row in rows:
        if row.error:
            lines.append(f"{row.label}: ERROR: {row.error}")
        if row.note and notes:
            lines.append(f"{row.label}: {row.note}")
    return lines


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|---|---:|---:|---:|---|:---:|",
    ]
    for row in rows:
        values = cells(row)
        result = f"**{values[-1]}**" if values[-1] in ("FAIL", "ERROR") else values[-1]
        lines.append("| " + " | ".join([*values[:-1], result]) + " |")
    lines += ["", summary(rows) + ".", ""]
    lines.extend(f"- {line}" for line in footnotes(rows, notes=False))
    return "\n".join(lines)


def save_json(path: Path, meta: dict[str, Any], rows: list[Row], details: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"meta": meta, "rows": [r.as_dict() for r in rows], "details": details}
    path.write_text(json.dumps(_clean(body), indent=2, allow_nan=False, ensure_ascii=False) + "\n")


def load_json(path: Path) -> tuple[dict[str, Any], list[Row]]:
    """The meta data and rows of a saved run."""
    body = json.loads(path.read_text())
    rows = [
        Row(
            key=r["key"],
            label=r["label"],
            unit=r["unit"],
            naq=_num(r["naq"]),
            raw=_num(r["raw"]),
            targets=[Target(t["kind"], t["value"]) for t in r["targets"]],
            note=r.get("note", ""),
            error=r.get("error", ""),
            base=r.get("base", "raw"),
        )
        for r in body["rows"]
    ]
    return body["meta"], rows


def _num(value: float | None) -> float | None:
    return None if value is None else float(value)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples lists, unknown objects strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)
