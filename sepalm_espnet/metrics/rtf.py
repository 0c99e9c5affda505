"""Real-time factor (paper §4.3): compute seconds per second of input audio, per component.

    meter = RtfMeter()
    meter.add_input(mixture_seconds)             # what the whole system's RTF is relative to
    with meter.time("separator", mixture_seconds):
        ...
    meter.write("exp/.../score/rtf.json")

rtf.json holds every component's summed audio and compute seconds (so JOB splits merge by
adding) plus the derived RTFs: `rtf` is all components' compute over the input audio. A GPU's
queued work is waited for at both ends of a timed block, or the time would only be the launch.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import torch

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path

RTF_FILE = "rtf.json"


@dataclass
class Timing:
    audio_s: float = 0.0
    compute_s: float = 0.0
    calls: int = 0

    @property
    def rtf(self) -> Optional[float]:
        return self.compute_s / self.audio_s if self.audio_s > 0 else None


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class RtfMeter:
    def __init__(self) -> None:
        self.components: Dict[str, Timing] = {}
        self.input_audio_s = 0.0

    def add_input(self, audio_s: float) -> None:
        """Seconds of system input (the mixtures) that the overall RTF is relative to."""
        self.input_audio_s += float(audio_s)

    def add(self, component: str, audio_s: float, compute_s: float, calls: int = 1) -> None:
        timing = self.components.setdefault(component, Timing())
        timing.audio_s += float(audio_s)
        timing.compute_s += float(compute_s)
        timing.calls += calls

    @contextlib.contextmanager
    def time(self, component: str, audio_s: float) -> Iterator[None]:
        """Time the block as `component` processing `audio_s` seconds of audio."""
        _synchronize()
        start = time.perf_counter()
        yield
        _synchronize()
        self.add(component, audio_s, time.perf_counter() - start)

    @property
    def rtf(self) -> Optional[float]:
        compute_s = sum(timing.compute_s for timing in self.components.values())
        return compute_s / self.input_audio_s if self.input_audio_s > 0 else None

    def to_json(self) -> Dict[str, Any]:
        return {
            "rtf": self.rtf,
            "input_audio_s": self.input_audio_s,
            "components": {
                name: {"audio_s": t.audio_s, "compute_s": t.compute_s, "calls": t.calls, "rtf": t.rtf}
                for name, t in sorted(self.components.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "rtf json") -> "RtfMeter":
        meter = cls()
        try:
            meter.add_input(data["input_audio_s"])
            for name, timing in data["components"].items():
                meter.add(name, timing["audio_s"], timing["compute_s"], int(timing["calls"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataDirError(f"{where}: not an RTF record ({type(exc).__name__}: {exc})") from exc
        return meter

    def merge(self, other: "RtfMeter") -> "RtfMeter":
        """Add another meter's times (a JOB split) into this one; returns self."""
        self.add_input(other.input_audio_s)
        for name, timing in other.components.items():
            self.add(name, timing.audio_s, timing.compute_s, timing.calls)
        return self

    def write(self, path: PathLike) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: PathLike) -> "RtfMeter":
        path = Path(path)
        if not path.is_file():
            raise DataDirError(f"{path}: file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataDirError(f"{path}: invalid JSON ({exc})") from exc
        return cls.from_json(data, str(path))


def merge_rtf_files(paths: Sequence[PathLike], out_path: PathLike) -> RtfMeter:
    meter = RtfMeter()
    for path in paths:
        meter.merge(RtfMeter.read(path))
    meter.write(out_path)
    return meter

