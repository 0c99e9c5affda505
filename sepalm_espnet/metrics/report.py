"""RESULTS.md: one Markdown table per test set, a row per system, a column per metric.

Stages add metrics by adding `Column`s and systems by adding keys to the results mapping, so
WER, SIM or RTF columns (and baselines as rows) need no change here. A system lacking a
metric shows `-` in that cell, so a table can mix systems scored by different stages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path

Results = Mapping[str, Mapping[str, Mapping[str, Optional[float]]]]  # test set -> system -> metric
MISSING = "-"


@dataclass(frozen=True)
class Column:
    key: str  # metric name in a system's results (as in summary.json)
    title: str  # table header
    fmt: str = "{:.2f}"


SEPARATION_COLUMNS = (
    Column("si_snri", "SI-SNRi (dB)"),
    Column("sdri", "SDRi (dB)"),
    Column("pesqi", "PESQi"),
    Column("estoii", "ESTOIi", "{:.3f}"),
    Column("n_utterances", "N", "{:.0f}"),
)


def _cell(value: Optional[float], column: Column) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return column.fmt.format(value)


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_results(
    results: Results, columns: Sequence[Column], metadata: Mapping[str, str]
) -> str:
    """Markdown text; test sets and systems keep the caller's order."""
    lines = ["# RESULTS", ""]
    lines += [f"- {_escape(name)}: {_escape(value)}" for name, value in metadata.items()]
    for test_set, systems in results.items():
        lines += ["", f"## {_escape(test_set)}", ""]
        lines.append("| system | " + " | ".join(_escape(c.title) for c in columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for system, metrics in systems.items():
            cells = [_cell(metrics.get(c.key), c) for c in columns]
            lines.append(f"| {_escape(system)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    path: PathLike,
    results: Results,
    columns: Sequence[Column] = SEPARATION_COLUMNS,
    metadata: Optional[Mapping[str, str]] = None,
) -> None:
    """Write atomically, so a killed stage never leaves half a RESULTS.md."""
    text = format_results(results, columns, metadata or {})
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
