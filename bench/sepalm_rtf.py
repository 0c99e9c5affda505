"""Real-time factor of a SepALM system per component, for 5 s inputs (paper §4.3), and peak
memory of one long input (pieces cut at pauses keep it bounded).

A packed archive, on an scp's mixtures:

    python bench/sepalm_rtf.py --model exp/packed/sepalm_x.zip --wav_scp dump/raw/test/wav.scp
    python bench/sepalm_rtf.py --model ... --wav_scp ... --long_sec 180   # also a 3-minute input

No trained weights (bench/random_system.py): every component built at a named size with random
weights, the corrector's and the AR synthesizer's decoding lengths forced to realistic values
(no early stop), on synthetic 5 s mixtures (or --wav_scp's):

    python bench/sepalm_rtf.py --random_weights mini --utterances 1
    python bench/sepalm_rtf.py --random_weights reduced_paper --utterances 1 --dtype bfloat16  # CPU: ~3-4 min
    python bench/sepalm_rtf.py --random_weights paper --device cuda --dtype bfloat16   # the 7B corrector

(`paper` on a CPU builds the 7B corrector whenever the memory allows, and then takes tens of
minutes an input: CPUs run `reduced_paper`.)

Inputs are cut or looped to --seconds. A warm-up call comes first and is not counted (an archive:
the first input; random weights: a --warmup_seconds input). Prints a table (component, audio
seconds, compute seconds, RTF), the total, peak RSS (and peak GPU memory on CUDA), and for
random weights the corrector's statuses and the decoding lengths actually produced.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/random_system.py

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# The pipeline's timed blocks (pipeline.SepALM.separate / _refine) in the order they run.
PIPELINE_ORDER = ("separator", "units", "corrector", "g2p", "text_to_semantic", "synthesizer", "aligner")


def print_table(report: dict, inputs: int, seconds: float, device: str) -> None:
    """`RTF`: compute over the component's own audio (the separator sees each mixture, the rest
    each estimate); `of total`: compute over the input audio, the component's part of the total."""
    print(f"{inputs} inputs of {seconds:.1f} s, device {device}, {torch.get_num_threads()} threads")
    print(f"{'component':<20}{'audio s':>10}{'compute s':>12}{'RTF':>9}{'of total':>10}")
    components = report["components"]
    order = [name for name in PIPELINE_ORDER if name in components] + sorted(set(components) - set(PIPELINE_ORDER))
    for name in order:
        timing = components[name]
        print(f"{name:<20}{timing['audio_s']:>10.1f}{timing['compute_s']:>12.2f}{timing['rtf']:>9.3f}"
              f"{timing['compute_s'] / report['input_audio_s']:>10.3f}")
    print(f"{'total (per input s)':<20}{report['input_audio_s']:>10.1f}"
          f"{sum(t['compute_s'] for t in components.values()):>12.2f}{'':>9}{report['rtf']:>10.3f}")


def archive_bench(args: argparse.Namespace) -> None:
    from sepalm_espnet.data.format import load_scp_audio
    from sepalm_espnet.data.kaldi_dir import read_kv
    from sepalm_espnet.inference import SepALM
    from sepalm_espnet.pipeline import measure_rtf

    model = SepALM.from_pretrained(args.model, device=args.device)
    report = measure_rtf(model, args.wav_scp, args.utterances, args.seconds).to_json()
    print_table(report, args.utterances, args.seconds, args.device)

    if args.long_sec > 0:
        inputs = [load_scp_audio(value, f"{args.wav_scp} (key {key})")
                  for key, value in list(read_kv(args.wav_scp).items())[: args.utterances]]
        fs = inputs[0][1]
        long_input = np.resize(np.concatenate([wave for wave, _ in inputs]), int(args.long_sec * fs))
        before = peak_rss_mb()
        start = time.perf_counter()
        speakers = model.separate(long_input, fs)
        elapsed = time.perf_counter() - start
        print(f"{args.long_sec:.0f} s input: {elapsed:.1f} s (RTF {elapsed / args.long_sec:.3f}), "
              f"{len(speakers[0].status)} pieces per speaker, peak RSS {peak_rss_mb():.0f} MB (before: {before:.0f} MB)")


def random_inputs(args: argparse.Namespace, fs: int) -> list:
    """--utterances (wave, fs) of --seconds: --wav_scp's mixtures cut or looped, else synthetic ones."""
    from random_system import synthetic_mixture

    if args.wav_scp is None:
        return [(synthetic_mixture(args.seconds, fs, seed), fs) for seed in range(args.utterances)]
    from sepalm_espnet.data.format import load_scp_audio
    from sepalm_espnet.data.kaldi_dir import read_kv

    inputs = []
    for key, value in list(read_kv(args.wav_scp).items())[: args.utterances]:
        wave, rate = load_scp_audio(value, f"{args.wav_scp} (key {key})")
        inputs.append((np.resize(wave, int(args.seconds * rate)), rate))
    return inputs


def random_weights_bench(args: argparse.Namespace) -> None:
    from random_system import ForcedDecoding, build_system, describe, synthetic_mixture

    dtype = DTYPES[args.dtype]
    if torch.device(args.device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32  # float32 components (all but the corrector)
        torch.backends.cudnn.allow_tf32 = args.tf32
    start = time.perf_counter()
    system = build_system(args.random_weights, args.device, dtype, args.corrector_shape,
                          ForcedDecoding(transcript_tokens=args.transcript_tokens))
    model = system.model
    print(f"random weights, size {args.random_weights}: built in {time.perf_counter() - start:.0f} s")
    for line in describe(system, args.dtype):
        print(f"  {line}")

    if args.warmup_seconds > 0:
        model.separate(synthetic_mixture(args.warmup_seconds, model.fs, seed=12345), model.fs)
    inputs = random_inputs(args, model.fs)
    totals = {}
    for batch_size in args.batch_sizes:
        model.options = dataclasses.replace(model.options, batch_size=batch_size)
        print(f"\n--- pipeline batch_size {batch_size} (segments refined together) ---")
        totals[batch_size] = timed_run(model, system.record, inputs, args)
    if len(totals) > 1:
        first = args.batch_sizes[0]
        print("\nbatch_size  total RTF  speed-up over batch_size " + str(first))
        for batch_size, rtf in totals.items():
            print(f"{batch_size:>10}{rtf:>11.3f}{totals[first] / rtf:>10.2f}x")
    memory = f"peak RSS {peak_rss_mb():.0f} MB"
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        memory += f", peak GPU memory {torch.cuda.max_memory_allocated() / 1024**2:.0f} MB (timed inputs)"
    print(memory)


def timed_run(model, record, inputs: list, args: argparse.Namespace) -> float:
    """Every input through model.separate_batch, timed per component (the record and the RTF
    meter start empty); prints the table and the decoding lengths; returns the total RTF."""
    from sepalm_espnet.metrics.rtf import RtfMeter

    record.clear()
    model.rtf = RtfMeter()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    statuses: Counter = Counter()
    rate = inputs[0][1]
    for speakers in model.separate_batch([wave for wave, _ in inputs], rate):
        for speaker in speakers:
            statuses.update(speaker.status)

    report = model.rtf.to_json()
    print_table(report, len(inputs), args.seconds, args.device)
    print(f"corrector statuses: {dict(sorted(statuses.items()))} (random weights: any is fine for timing)")
    for step, calls in record.steps.items():
        if calls:
            prompts, new = zip(*calls)
            print(f"corrector {step}: {len(calls)} prompts, {np.mean(prompts):.0f} tokens each, "
                  f"{min(new)}-{max(new)} new tokens (forced: {args.transcript_tokens})")
    if record.steps["step I"]:
        units = sum(prompt - record.template_tokens for prompt, _ in record.steps["step I"])
        print(f"units: {units / model.rtf.components['corrector'].audio_s:.1f} a second of estimate after merging "
              f"repeats (the corrector's prompt length follows)")
    if record.ar_frames:
        exact = sum(frames_in == frames_out for frames_in, frames_out in record.ar_frames)
        print(f"synthesizer AR: {exact}/{len(record.ar_frames)} syntheses ran exactly T' frames "
              f"(T' = {record.ar_frames[0][0]})")
        parts = ", ".join(f"{name} {timing.compute_s:.2f} s" for name, timing in record.synthesizer_parts.components.items())
        print(f"synthesizer block: {parts}")
    return report["rtf"]


def main() -> None:
    from random_system import CORRECTOR_SHAPES, SIZES, ForcedDecoding
    from sepalm_espnet.pipeline import PipelineOptions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="packed SepALM archive or its unpacked dir")
    parser.add_argument("--random_weights", choices=list(SIZES),
                        help="no archive: every component at this size with random weights")
    parser.add_argument("--wav_scp", help="the inputs (required with --model; random weights: synthetic mixtures without it)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--long_sec", type=float, default=0.0, help="--model: also time one input this long")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32",
                        help="random weights: the corrector's weights (the other components take float32 inputs)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                        help="random weights on CUDA: TF32 matmuls and convolutions for the float32 components")
    parser.add_argument("--corrector_shape", choices=list(CORRECTOR_SHAPES),
                        help="random weights: this LLaMA shape instead of the size's (no memory fallback)")
    parser.add_argument("--transcript_tokens", type=int, default=ForcedDecoding.transcript_tokens,
                        help=ForcedDecoding.__dataclass_fields__["transcript_tokens"].metadata["help"])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[PipelineOptions.batch_size],
                        help="random weights: pipeline batch sizes to time side by side on the same inputs (e.g. 1 8)")
    parser.add_argument("--warmup_seconds", type=float, default=1.0,
                        help="random weights: length of the untimed warm-up input (0: none)")
    args = parser.parse_args()
    if (args.model is None) == (args.random_weights is None):
        parser.error("give exactly one of --model and --random_weights")
    if args.model is not None and args.wav_scp is None:
        parser.error("--model needs --wav_scp")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.model is not None:
        archive_bench(args)
    else:
        random_weights_bench(args)
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
