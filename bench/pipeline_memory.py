"""Peak memory of the whole pipeline on one long input against a short one (issue: 10 min within
1.3x of 30 s), each measured in a fresh process so that neither inherits the other's peak.

    python bench/pipeline_memory.py                      # mini size, 30 s and 600 s, one thread
    python bench/pipeline_memory.py --seconds 30 180 600 --size reduced_paper

Every component is built with random weights at --size (bench/random_system.py: decoding
lengths forced, so a long input does all the work a trained system would). One synthetic
two-talker mixture of each length goes through SepALM.separate once, after a 1 s warm-up.
Prints, per length: peak RSS, the RSS before the input (models loaded), the growth the input
caused, pieces per speaker, wall time; then the ratio of each peak to the first length's.
What bounds it: the separator's overlapping segments (LongAudioSeparator) and the pipeline's
pieces cut at pauses (PipelineOptions.max_segment_sec), refined batch_size at a time; only the
waveforms themselves (the input, two estimates, two outputs: 4 bytes a sample) grow with length.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/random_system.py

MB = 1024  # ru_maxrss is in KiB on Linux


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / MB
    raise RuntimeError("VmRSS not in /proc/self/status")


def measure(size: str, seconds: float, threads: int) -> dict:
    """In this process: build, warm up, separate one `seconds` input; the figures as a dict."""
    from random_system import build_system, synthetic_mixture

    torch.set_num_threads(threads)
    model = build_system(size).model
    model.separate(synthetic_mixture(1.0, model.fs, seed=12345), model.fs)
    mixture = synthetic_mixture(seconds, model.fs, seed=0)
    before = rss_mb()
    start = time.perf_counter()
    speakers = model.separate(mixture, model.fs)
    elapsed = time.perf_counter() - start
    return dict(seconds=seconds, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MB,
                before_mb=before, pieces=len(speakers[0].status), wall_s=elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="mini", help="bench/random_system.py SIZES key")
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 600.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help="internal: measure one length, print JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.size, args.seconds[0], args.threads)))
        return
    rows = []
    for seconds in args.seconds:
        command = [sys.executable, __file__, "--child", "--size", args.size, "--seconds", str(seconds),
                   "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"{seconds} s: the measuring process failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"size {args.size}, {args.threads} thread(s); each length in a fresh process")
    print(f"{'input s':>8}{'peak RSS MB':>13}{'before MB':>11}{'growth MB':>11}{'pieces/spk':>12}{'wall s':>9}{'RTF':>7}"
          f"{'peak / first':>14}")
    for row in rows:
        print(f"{row['seconds']:>8.0f}{row['peak_rss_mb']:>13.0f}{row['before_mb']:>11.0f}"
              f"{row['peak_rss_mb'] - row['before_mb']:>11.0f}{row['pieces']:>12}{row['wall_s']:>9.1f}"
              f"{row['wall_s'] / row['seconds']:>7.3f}{row['peak_rss_mb'] / rows[0]['peak_rss_mb']:>13.2f}x")


if __name__ == "__main__":
    main()
