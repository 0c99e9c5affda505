"""RESULTS.md: one Markdown table per test set, a row per system, a column per metric.

Stages add metrics by adding `Column`s and systems by adding keys to the results mapping, so
new columns (and baselines as rows) need no change here. A system lacking a metric shows `-`
in that cell, so a table can mix systems scored by different stages. A system's metrics are
whatever metric files its score directory holds (`read_system_metrics`). A system that could
not be scored on a test set (`NotScored`) keeps its row, marked "not scored", and the reason is
listed under the table: a missing system must not look like a system nobody ran.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path

logger = logging.getLogger(__name__)

MISSING = "-"
NOT_SCORED = "not scored"


@dataclass(frozen=True)
class NotScored:
    """In place of a system's metrics: why it has none on this test set."""

    reason: str


Metrics = Mapping[str, Optional[float]]
Results = Mapping[str, Mapping[str, Union[Metrics, NotScored]]]  # test set -> system -> metric


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
# WER of a system's transcripts (metrics.wer, e.g. the corrector's), scores of its output speech
# (metrics.speech; WERs in %) and its speed (metrics.rtf).
TRANSCRIPT_COLUMNS = (Column("wer", "WER (%)"),)
SPEECH_COLUMNS = (
    Column("wer_teacher", "WER (teacher, %)"),
    Column("wer_gt", "WER (GT, %)"),
    Column("sim", "SIM", "{:.3f}"),
    # Transcripts whose Whisper decoding looped to its token limit (asr_teacher.LENGTH_LIMIT).
    Column("n_asr_length_limit", "ASR token-limit hits", "{:.0f}"),
)
# Mixtures where SLM-SS's AR decoder reached its length cap (stage 4's `decode_status`).
CAP_COLUMNS = (Column("n_separator_capped", "separator length-cap hits", "{:.0f}"),)
# The corrector's fallbacks (its `status` file: every value but `parsed`), of transcript rows.
FALLBACK_COLUMNS = (
    Column("n_fallbacks", "fallbacks", "{:.0f}"),
    Column("fallback_rate", "fallback rate (%)", "{:.1f}"),
)
RTF_COLUMNS = (Column("rtf", "RTF", "{:.3f}"),)
# RTF last: readers (and the mini recipe's test) take a row's last cell as its RTF.
ALL_COLUMNS = SEPARATION_COLUMNS + TRANSCRIPT_COLUMNS + SPEECH_COLUMNS + CAP_COLUMNS + FALLBACK_COLUMNS + RTF_COLUMNS
COLUMN_PRESETS = {
    "separation": SEPARATION_COLUMNS,
    "speech": SPEECH_COLUMNS,
    "caps": CAP_COLUMNS,
    "fallback": FALLBACK_COLUMNS,
    "all": ALL_COLUMNS,
}


def columns_present(results: Results, columns: Sequence[Column] = ALL_COLUMNS,
                    always: Sequence[Column] = SEPARATION_COLUMNS) -> Tuple[Column, ...]:
    """`always`, then every other column that at least one system of any test set has a value for."""
    def has_value(column: Column) -> bool:
        return any(
            _cell(metrics.get(column.key), column) != MISSING
            for systems in results.values() for metrics in systems.values() if not isinstance(metrics, NotScored)
        )

    return tuple(always) + tuple(c for c in columns if c not in always and has_value(c))


def select_columns(names: Sequence[str]) -> Tuple[Column, ...]:
    """Preset names (COLUMN_PRESETS) and metric keys (ALL_COLUMNS), in the order given."""
    by_key = {column.key: column for column in ALL_COLUMNS}
    selected: list = []
    for name in names:
        if name in COLUMN_PRESETS:
            selected += [c for c in COLUMN_PRESETS[name] if c not in selected]
        elif name in by_key:
            if by_key[name] not in selected:
                selected.append(by_key[name])
        else:
            raise ValueError(f"unknown column {name!r}: choose presets {sorted(COLUMN_PRESETS)} or keys {sorted(by_key)}")
    return tuple(selected)


# Files a score directory may hold, in precedence order: separation (metrics.separation), WER
# of the corrector's transcripts, scores of the output speech (metrics.speech), speed (metrics.rtf).
METRIC_FILES = ("summary.json", "wer_summary.json", "speech_summary.json", "rtf.json")


def read_system_metrics(score_dir: PathLike, files: Sequence[str] = METRIC_FILES) -> Dict[str, Optional[float]]:
    """The top-level numbers of every metric file present in `score_dir`, merged.

    A key found in two files keeps the first file's value (a warning names both when they
    differ). No metric file at all is an error, so a mistyped directory does not become a row
    of dashes.
    """
    score_dir = Path(score_dir)
    merged: Dict[str, Optional[float]] = {}
    source: Dict[str, Path] = {}
    found = []
    for name in files:
        path = score_dir / name
        if not path.is_file():
            continue
        found.append(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataDirError(f"{path}: invalid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise DataDirError(f"{path}: expected a JSON object")
        for key, value in data.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                continue  # nested records (rtf.json's components) are not table cells
            if key in merged:
                if merged[key] != value:
                    logger.warning("%s: %s=%s differs from %s (%s), which is kept", path, key, value, source[key], merged[key])
                continue
            merged[key], source[key] = value, path
    if not found:
        raise DataDirError(f"{score_dir}: none of {', '.join(files)} found")
    return merged


def read_system_metrics_dirs(score_dirs: Sequence[PathLike]) -> Dict[str, Optional[float]]:
    """The metrics of all a system's score directories; the first directory wins a clash."""
    merged: Dict[str, Optional[float]] = {}
    for score_dir in score_dirs:
        for key, value in read_system_metrics(score_dir).items():
            merged.setdefault(key, value)
    return merged


def _cell(value: Optional[float], column: Column) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return column.fmt.format(value)


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_results(
    results: Results, columns: Sequence[Column], metadata: Mapping[str, str], appendix: str = ""
) -> str:
    """Markdown text; test sets and systems keep the caller's order; `appendix` (Markdown) last."""
    lines = ["# RESULTS", ""]
    lines += [f"- {_escape(name)}: {_escape(value)}" for name, value in metadata.items()]
    for test_set, systems in results.items():
        lines += ["", f"## {_escape(test_set)}", ""]
        lines.append("| system | " + " | ".join(_escape(c.title) for c in columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        not_scored = []
        for system, metrics in systems.items():
            if isinstance(metrics, NotScored):
                cells = [NOT_SCORED] + [MISSING] * (len(columns) - 1)
                not_scored.append(f"- {_escape(system)}: {NOT_SCORED} ({_escape(metrics.reason)})")
            else:
                cells = [_cell(metrics.get(c.key), c) for c in columns]
            lines.append(f"| {_escape(system)} | " + " | ".join(cells) + " |")
        if not_scored:
            lines += ["", f"Not scored on {_escape(test_set)}:", ""] + not_scored
    return "\n".join(lines) + "\n" + appendix


def write_results(
    path: PathLike,
    results: Results,
    columns: Sequence[Column] = SEPARATION_COLUMNS,
    metadata: Optional[Mapping[str, str]] = None,
    appendix: str = "",
) -> None:
    """Write atomically, so a killed stage never leaves half a RESULTS.md."""
    text = format_results(results, columns, metadata or {}, appendix)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
