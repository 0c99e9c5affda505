"""SLM-SS decoding speed, side by side in one run: hybrid decoding (the AR writes codebook 0 of
both speakers serialized, `<sos> spk1 <sc> spk2 <eos>`, then one NAR pass per residual codebook)
with the AR's KV cache on and off, against fully autoregressive decoding of all Q codebooks.
The paper credits hybrid decoding with about a 10x speed-up over AR-only (issue 11 item 6).

Random weights from train_slm_ss_{mini,paper}.yaml's model_conf. Paper size: WavLM-large
cannot be downloaded here, so its encoder is the conv encoder at WavLM-large's output size
(1024 features, 50 frames/s); the rest is the config's (optionally fewer layers: --paper_depth_divisor).

Lengths are forced (random weights would stop at a random <sc> / <eos>): forward hooks on the
AR decoder mask <sc> and <eos> at every step but the one each must come at, where they are
forced, so each speaker gets exactly T = seconds x 50 frames (250 for 5 s) and the AR takes
2T + 2 steps. The package is not changed: only the bench's model carries the hooks.

AR-only baseline: the model has no AR-only mode. Its cost is built by running the same AR
decoder, with the cache, for Q x T frames per speaker (2QT + 2 steps: all Q codebooks of each
speaker flattened into one serialized sequence), encoder included, no NAR; its output head
stays the codebook-0 one (a flat vocabulary would be Q times wider: a small extra cost ignored).

tokens/s counts the 2 x T x Q output codec tokens (the same for every decoding of a length);
RTF is seconds of compute per second of mixture. "x hybrid" is a row's time over the cached
hybrid's at the same length (AR-only row: the paper's ~10x; no-cache row: the cache's speed-up).
Linear-time check: mean ms per cached AR step over the first L = 2T steps and the first 4L
steps, both read from the timestamps of the AR-only run's steps (a decoding of 4L steps is the
first 4L steps of a longer one); a 4L/L ratio <= 1.3 is linear-time decoding.

    python bench/slm_ss_speed.py                       # mini 5 s + paper (1 s, no cache at 0.5 s), 1 thread: ~3 min
    python bench/slm_ss_speed.py --sizes mini --seconds 1
    python bench/slm_ss_speed.py --sizes paper --paper_seconds 5 --paper_depth_divisor 4
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch
import yaml

from sepalm_espnet.slm_ss.model import SlmSsDecodeOptions, SlmSsModel

CONF_DIR = Path(__file__).resolve().parents[1] / "egs2/TEMPLATE/sepalm1/conf/tuning"
SAMPLE_RATE = 16000
FRAME_RATE = 50.0  # DAC 16 kHz codec frames per second, and the conv encoder's (hop 320)
WAVLM_LARGE_WIDTH = 1024
FORCE_LOGIT = 1.0e4
LINEARITY_LIMIT = 1.3


def now(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def build(size: str, depth_divisor: int, device: str) -> tuple:
    """The size's model (random weights, eval mode) and a line saying what was changed."""
    conf = yaml.safe_load((CONF_DIR / f"train_slm_ss_{size}.yaml").read_text(encoding="utf-8"))["model_conf"]
    notes = []
    if conf["encoder"] == "wavlm":
        conf = dict(conf, encoder="conv", encoder_conf=dict(output_dim=WAVLM_LARGE_WIDTH))
        notes.append(f"encoder: conv at WavLM-large's output size ({WAVLM_LARGE_WIDTH}, 50 frames/s) instead of "
                     "WavLM-large (not downloadable here)")
    if depth_divisor > 1:
        depths = ("num_encoder_layers", "num_decoder_layers", "num_nar_layers")
        reduced = {name: max(1, conf[name] // depth_divisor) for name in depths}
        notes.append("depth reduced: " + ", ".join(f"{name} {conf[name]} -> {reduced[name]}" for name in depths))
        conf = dict(conf, **reduced)
    torch.manual_seed(0)
    model = SlmSsModel(**conf).to(device).eval()
    return model, "; ".join(notes) or "config as is"


class ForcedLengthProbe:
    """Forward hooks on the AR decoder and the NAR of one model.

    generate_first_codebook calls the AR decoder once per step, cached or not, and reads the
    step's logits at [:, -1]: the call count is the step. <sc> and <eos> get -FORCE_LOGIT
    everywhere except <sc> at step T (after speaker 1's T frames) and <eos> at step 2T + 1,
    where they get +FORCE_LOGIT. Also timestamps every AR step and sums the NAR passes' time.
    """

    def __init__(self, model: SlmSsModel, device: str):
        self.device = device
        self.sc_id, self.eos_id = model.ar.sc_id, model.ar.eos_id
        model.ar.register_forward_pre_hook(self.before_ar_step)
        model.ar.register_forward_hook(self.after_ar_step)
        model.nar.register_forward_pre_hook(self.before_nar_pass)
        model.nar.register_forward_hook(self.after_nar_pass)
        self.start(1)

    def start(self, frames_per_speaker: int) -> None:
        self.frames = frames_per_speaker
        self.step = 0
        self.ar_started = 0.0
        self.step_ends: List[float] = []  # seconds since the first step started, after each step's decoder
        self.nar_seconds = 0.0
        self.nar_started = 0.0

    def before_ar_step(self, module, args) -> None:
        if self.step == 0:
            self.ar_started = now(self.device)

    def after_ar_step(self, module, args, output) -> None:
        last = output[0][:, -1]  # in place: generate reads these logits
        last[:, [self.sc_id, self.eos_id]] = -FORCE_LOGIT
        forced = {self.frames: self.sc_id, 2 * self.frames + 1: self.eos_id}.get(self.step)
        if forced is not None:
            last[:, forced] = FORCE_LOGIT
        self.step += 1
        self.step_ends.append(now(self.device) - self.ar_started)

    def before_nar_pass(self, module, args) -> None:
        self.nar_started = now(self.device)

    def after_nar_pass(self, module, args, output) -> None:
        self.nar_seconds += now(self.device) - self.nar_started

    @property
    def ar_seconds(self) -> float:
        return self.step_ends[-1] if self.step_ends else 0.0


@dataclass
class Run:
    decoding: str
    audio_seconds: float
    frames: int  # written per speaker by the AR (AR-only: Q x T)
    steps: int
    ar_seconds: float
    nar_seconds: float
    total_seconds: float
    output_tokens: int
    step_ends: List[float] = field(repr=False)

    def mean_step_ms(self, steps: int) -> float:
        return 1000 * self.step_ends[steps - 1] / steps


def mixture(seconds: float, device: str) -> tuple:
    samples = round(seconds * SAMPLE_RATE)
    speech = 0.1 * torch.randn(1, samples, generator=torch.Generator().manual_seed(0))
    return speech.to(device), torch.tensor([samples], device=device)


def frames_of(seconds: float) -> int:
    return max(1, round(seconds * FRAME_RATE))


@torch.no_grad()
def hybrid(model: SlmSsModel, probe: ForcedLengthProbe, seconds: float, use_cache: bool, device: str) -> Run:
    speech, lengths = mixture(seconds, device)
    frames = frames_of(seconds)
    probe.start(frames)
    started = now(device)
    (output,) = model.generate(speech, lengths, [frames], SlmSsDecodeOptions(use_cache=use_cache))
    total = now(device) - started
    shapes = [tuple(tokens.shape) for tokens in output.tokens]
    if output.status != "ok" or shapes != [(frames, model.num_codebooks)] * 2:
        raise RuntimeError(f"forcing failed: status {output.status}, token shapes {shapes}, "
                           f"expected 2 x {(frames, model.num_codebooks)}")
    return Run(f"hybrid, {'KV cache' if use_cache else 'no KV cache'}", seconds, frames, probe.step,
               probe.ar_seconds, probe.nar_seconds, total, 2 * frames * model.num_codebooks, probe.step_ends)


@torch.no_grad()
def ar_only(model: SlmSsModel, probe: ForcedLengthProbe, seconds: float, device: str) -> Run:
    """Encoder + the cached AR decoder over Q x T frames per speaker (the flattened serialization)."""
    speech, lengths = mixture(seconds, device)
    frames = frames_of(seconds)
    flat_frames = model.num_codebooks * frames
    probe.start(flat_frames)
    started = now(device)
    memory, memory_valid = model.encode(speech, lengths)
    caps = torch.tensor([flat_frames], device=device)
    first, second, statuses = model.generate_first_codebook(memory, memory_valid, caps, SlmSsDecodeOptions())
    total = now(device) - started
    if statuses != ["ok"] or [len(first[0]), len(second[0])] != [flat_frames] * 2:
        raise RuntimeError(f"forcing failed: status {statuses}, {len(first[0])} + {len(second[0])} frames, "
                           f"expected {flat_frames} each")
    return Run(f"AR-only, all {model.num_codebooks} codebooks", seconds, flat_frames, probe.step, probe.ar_seconds,
               0.0, total, 2 * frames * model.num_codebooks, probe.step_ends)


def best_of(repeats: int, measure: Callable[[], Run]) -> Run:
    """The fastest of `repeats` runs: the machine is shared, slower runs measure the others' load."""
    return min((measure() for _ in range(repeats)), key=lambda run: run.total_seconds)


def print_row(size: str, run: Run, reference: Optional[Run]) -> None:
    ratio = f"{run.total_seconds / reference.total_seconds:8.2f}x" if reference else f"{'':9}"
    nar = f"{run.nar_seconds:7.2f}" if run.nar_seconds else f"{'-':>7}"
    print(f"{size:6} {run.decoding:26} {run.audio_seconds:5.1f} {run.frames:7d} {run.steps:6d} {run.ar_seconds:8.2f} "
          f"{nar} {run.total_seconds:8.2f} {run.output_tokens / run.total_seconds:9.1f} "
          f"{run.total_seconds / run.audio_seconds:8.3f} {1000 * run.ar_seconds / run.steps:8.2f} {ratio}",
          flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["mini", "paper"], choices=["mini", "paper"])
    parser.add_argument("--seconds", type=float, default=5.0, help="mixture length at mini size (16 kHz)")
    parser.add_argument("--paper_seconds", type=float, default=1.0,
                        help="mixture length at paper size: 5 s AR-only alone takes about 9 min on one CPU thread")
    parser.add_argument("--paper_uncached_seconds", type=float, default=0.5,
                        help="mixture length of the paper-size no-cache run (its cost grows with the square)")
    parser.add_argument("--paper_depth_divisor", type=int, default=1,
                        help="divide the paper config's encoder/decoder/NAR layer counts by this (1: as is)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mini measurement (the fastest is kept)")
    parser.add_argument("--paper_repeats", type=int, default=1, help="runs per paper-size measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.paper_depth_divisor < 1:
        parser.error(f"--paper_depth_divisor must be >= 1, got {args.paper_depth_divisor}")
    torch.set_num_threads(args.threads)
    bench_started = time.perf_counter()
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; random weights, "
          f"greedy, lengths forced to T = seconds x {FRAME_RATE:.0f} frames per speaker")
    print("AR-only: no such mode in the model; its cost is the same cached AR decoder run for Q x T frames per "
          "speaker (2QT + 2 steps, all Q codebooks serialized), encoder included, no NAR")
    header = (f"{'size':6} {'decoding':26} {'mix s':>5} {'frm/spk':>7} {'steps':>6} {'AR s':>8} {'NAR s':>7} "
              f"{'total s':>8} {'tokens/s':>9} {'RTF':>8} {'ms/step':>8} {'x hybrid':>9}")
    summaries = []
    for size in args.sizes:
        paper = size == "paper"
        model, note = build(size, args.paper_depth_divisor if paper else 1, args.device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        seconds = args.paper_seconds if paper else args.seconds
        uncached_seconds = min(args.paper_uncached_seconds, seconds) if paper else seconds
        repeats = args.paper_repeats if paper else args.repeats
        print(f"\n{size}: {params:.1f}M parameters, Q = {model.num_codebooks} codebooks x {model.codebook_size}, "
              f"{note}; best of {repeats}")
        if paper and seconds != args.seconds:
            print(f"{size}: {seconds:g} s mixture instead of {args.seconds:g} s (one CPU thread would take too long; "
                  f"--paper_seconds to change)")
        if uncached_seconds != seconds:
            print(f"{size}: no-cache run at {uncached_seconds:g} s only (its cost grows with the square of the "
                  f"length), against a cached run at the same length")
        if model.num_codebooks < 4:
            raise ValueError(f"{size}: the linear-time check reads 4L = 8T steps of the AR-only run's 2QT + 2, "
                             f"so it needs Q >= 4 codebooks, got {model.num_codebooks}")
        probe = ForcedLengthProbe(model, args.device)
        hybrid(model, probe, 0.1, True, args.device)  # warm-up
        print(header)
        print("-" * len(header))
        cached = best_of(repeats, lambda: hybrid(model, probe, seconds, True, args.device))
        print_row(size, cached, cached)
        flat = best_of(repeats, lambda: ar_only(model, probe, seconds, args.device))
        print_row(size, flat, cached)
        cached_short = cached
        if uncached_seconds != seconds:
            cached_short = best_of(repeats, lambda: hybrid(model, probe, uncached_seconds, True, args.device))
            print_row(size, cached_short, cached_short)
        uncached = best_of(repeats, lambda: hybrid(model, probe, uncached_seconds, False, args.device))
        print_row(size, uncached, cached_short)
        short_steps = 2 * cached.frames
        short_ms, long_ms = flat.mean_step_ms(short_steps), flat.mean_step_ms(4 * short_steps)
        growth = long_ms / short_ms
        linear = growth <= LINEARITY_LIMIT
        verdict = f"{'<=' if linear else '>'} {LINEARITY_LIMIT}: {'' if linear else 'NOT '}linear-time"
        summaries.append(
            f"{size:6} AR-only / hybrid {flat.total_seconds / cached.total_seconds:5.2f}x at {seconds:g} s "
            f"(paper: ~10x); no cache / cache {uncached.total_seconds / cached_short.total_seconds:5.2f}x at "
            f"{uncached_seconds:g} s; cached AR ms/step over L = {short_steps} steps {short_ms:.2f}, over "
            f"4L = {4 * short_steps} {long_ms:.2f}: 4L/L {growth:.2f} ({verdict})"
        )
        del model, probe
    print("\nratios (x hybrid: a row's total over the cached hybrid's at the same mixture length)")
    for line in summaries:
        print(line)
    print(f"bench wall time {time.perf_counter() - bench_started:.0f} s")


if __name__ == "__main__":
    main()
