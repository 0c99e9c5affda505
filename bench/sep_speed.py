"""Separator inference speed and peak memory: ours (segment-wise, file to file, streaming) vs
ESPnet's SeparateSpeech (whole waveform in memory, its own segment_size/hop_size), same weights,
same inputs, same segment and hop, same thread count.

Each measurement runs in its own process. Peak RSS is reset after imports, model loading and a
warm-up call (/proc/self/clear_refs), so "sep peak" is the memory the separation itself needs on
top of the loaded model; "peak" is the process total.

    python bench/sep_speed.py                                   # mini + paper, 5 s / 30 s / 10 min
    python bench/sep_speed.py --configs mini --durations 5 30 600
    python bench/sep_speed.py --skip paper:600                  # leave out slow pairs
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"
METHODS = ("ours", "espnet")


def memory_mb(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def prepare_model(config_name: str, model_dir: Path) -> None:
    """Random-weight model saved the way ESPnet's trainer saves one (config.yaml + .pth)."""
    import torch
    import yaml

    from sepalm_espnet.separator.registry import EnhancementTask

    args = vars(EnhancementTask.get_parser().parse_args([]))
    args.update(yaml.safe_load((CONF_DIR / f"train_sep_sepformer_{config_name}.yaml").read_text()))
    torch.manual_seed(0)
    model = EnhancementTask.build_model(argparse.Namespace(**args))
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), model_dir / "model.pth")
    count = sum(p.numel() for p in model.parameters())
    print(f"# {config_name}: {count / 1e6:.2f}M parameters", flush=True)


def prepare_input(seconds: float, fs: int, path: Path) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", samplerate=fs, channels=1, subtype="FLOAT") as out:
        remaining = round(seconds * fs)
        while remaining:
            block = min(remaining, 60 * fs)
            out.write((0.1 * rng.standard_normal(block)).astype(np.float32))
            remaining -= block


def worker(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line."""
    import numpy as np
    import soundfile as sf
    import torch

    from sepalm_espnet.separator.long_audio import LongAudioSeparator
    from sepalm_espnet.separator.registry import enh_model_separate_fn, load_enh_model, min_input_samples

    torch.set_num_threads(args.threads)
    model_dir, out_dir = Path(args.model_dir), Path(args.out_dir)
    warmup = np.random.default_rng(1).standard_normal(args.fs).astype(np.float32) * 0.1
    if args.method == "ours":
        model, _ = load_enh_model(model_dir / "config.yaml", model_dir / "model.pth")
        separator = LongAudioSeparator(
            enh_model_separate_fn(model), model.num_spk, args.fs,
            args.segment_sec, args.hop_sec, min_input_samples(model),
        )
        separator.separate_array(warmup, args.fs)
        outputs = [out_dir / f"ours_spk{n + 1}.wav" for n in range(model.num_spk)]

        def run() -> None:
            separator.separate_file(args.input, outputs)
    else:
        from espnet2.bin.enh_inference import SeparateSpeech

        separate_speech = SeparateSpeech(
            train_config=model_dir / "config.yaml", model_file=model_dir / "model.pth",
            segment_size=args.segment_sec, hop_size=args.hop_sec,
        )
        separate_speech(warmup[None], fs=args.fs)

        def run() -> None:
            mixture, fs = sf.read(args.input, dtype="float32")
            for n, wave in enumerate(separate_speech(mixture[None], fs=fs)):
                sf.write(out_dir / f"espnet_spk{n + 1}.wav", wave[0], fs, subtype="FLOAT")

    loaded_mb = memory_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    start = time.perf_counter()
    with torch.inference_mode():
        run()
    seconds = time.perf_counter() - start
    peak_mb = memory_mb("VmHWM")
    print(json.dumps(dict(seconds=seconds, peak_mb=peak_mb, sep_peak_mb=peak_mb - loaded_mb)))


def measure(method: str, model_dir: Path, input_path: Path, out_dir: Path, args) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "worker", "--method", method,
        "--model_dir", str(model_dir), "--input", str(input_path), "--out_dir", str(out_dir),
        "--fs", str(args.fs), "--segment_sec", str(args.segment_sec), "--hop_sec", str(args.hop_sec),
        "--threads", str(args.threads),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{method} on {input_path.name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> None:
    skip = set(args.skip)
    with tempfile.TemporaryDirectory(prefix="sep_speed.") as tmp:
        tmp = Path(tmp)
        inputs = {}
        for seconds in args.durations:
            inputs[seconds] = tmp / f"input_{seconds:g}s.wav"
            prepare_input(seconds, args.fs, inputs[seconds])
        print(f"# fs {args.fs} Hz, segment {args.segment_sec} s, hop {args.hop_sec} s, "
              f"{args.threads} thread(s), random weights")
        header = f"{'config':<7}{'input':>8}  {'method':<7}{'time s':>9}{'s/s audio':>10}{'peak MB':>9}{'sep peak MB':>12}"
        results = {}
        for config in args.configs:
            prepare_model(config, tmp / config)
            print(header)
            for seconds in args.durations:
                if f"{config}:{seconds:g}" in skip:
                    print(f"{config:<7}{seconds:>7g}s  skipped (--skip)")
                    continue
                for method in METHODS:
                    r = measure(method, tmp / config, inputs[seconds], tmp, args)
                    results[config, seconds, method] = r
                    print(f"{config:<7}{seconds:>7g}s  {method:<7}{r['seconds']:>9.2f}"
                          f"{r['seconds'] / seconds:>10.3f}{r['peak_mb']:>9.0f}{r['sep_peak_mb']:>12.0f}", flush=True)
        print("# ratios")
        for (config, seconds, method), r in results.items():
            if method != "ours":
                continue
            espnet = results[config, seconds, "espnet"]
            print(f"{config} {seconds:g}s: throughput ours/ESPnet = {espnet['seconds'] / r['seconds']:.2f}")
        longest, reference = max(args.durations), 30
        for config in args.configs:
            for method in METHODS:
                if (config, longest, method) in results and (config, reference, method) in results:
                    long_r, ref_r = results[config, longest, method], results[config, reference, method]
                    print(f"{config} {method}: peak at {longest:g}s / at {reference}s = "
                          f"{long_r['peak_mb'] / ref_r['peak_mb']:.2f} (process), "
                          f"{long_r['sep_peak_mb'] / max(ref_r['sep_peak_mb'], 1.0):.2f} (separation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["compare", "worker"], default="compare")
    parser.add_argument("--configs", nargs="+", choices=["mini", "paper"], default=["mini", "paper"])
    parser.add_argument("--durations", nargs="+", type=float, default=[5, 30, 600], help="input seconds")
    parser.add_argument("--skip", nargs="*", default=[], help="config:seconds pairs to leave out")
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--segment_sec", type=float, default=8.0)
    parser.add_argument("--hop_sec", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--model_dir", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "worker":
        worker(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
