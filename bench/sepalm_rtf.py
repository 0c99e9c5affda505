"""Real-time factor of a packed SepALM system per component, for 5 s inputs (paper §4.3), and
peak memory of one long input (pieces cut at pauses keep it bounded).

    python bench/sepalm_rtf.py --model exp/packed/sepalm_x.zip --wav_scp dump/raw/test/wav.scp
    python bench/sepalm_rtf.py --model ... --wav_scp ... --long_sec 180   # also a 3-minute input

Inputs are the scp's mixtures cut or looped to --seconds; the first call is a warm-up and is
not counted. Prints a table (component, audio seconds, compute seconds, RTF) and the total.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="packed SepALM archive or its unpacked dir")
    parser.add_argument("--wav_scp", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--long_sec", type=float, default=0.0, help="also time one input this long")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from sepalm_espnet.data.format import load_scp_audio
    from sepalm_espnet.data.kaldi_dir import read_kv
    from sepalm_espnet.inference import SepALM
    from sepalm_espnet.pipeline import measure_rtf

    model = SepALM.from_pretrained(args.model, device=args.device)
    report = measure_rtf(model, args.wav_scp, args.utterances, args.seconds).to_json()
    print(f"{args.utterances} inputs of {args.seconds:.1f} s, device {args.device}")
    print(f"{'component':<18}{'audio s':>10}{'compute s':>12}{'RTF':>9}")
    for name, timing in report["components"].items():
        print(f"{name:<18}{timing['audio_s']:>10.1f}{timing['compute_s']:>12.2f}{timing['rtf']:>9.3f}")
    print(f"{'total (per input s)':<18}{report['input_audio_s']:>10.1f}{'':>12}{report['rtf']:>9.3f}")

    if args.long_sec > 0:
        inputs = [load_scp_audio(value, f"{args.wav_scp} (key {key})")
                  for key, value in list(read_kv(args.wav_scp).items())[: args.utterances]]
        fs = inputs[0][1]
        long_input = np.resize(np.concatenate([wave for wave, _ in inputs]), int(args.long_sec * fs))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        speakers = model.separate(long_input, fs)
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{args.long_sec:.0f} s input: {elapsed:.1f} s (RTF {elapsed / args.long_sec:.3f}), "
              f"{len(speakers[0].status)} pieces per speaker, peak RSS {peak:.0f} MB (before: {before:.0f} MB)")


if __name__ == "__main__":
    main()
