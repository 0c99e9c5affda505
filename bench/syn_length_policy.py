"""The AR+NAR synthesizer's length policies side by side on a trained recipe's test set: s*'s
SI-SNRi, WER and SIM (stage 14's scoring) and the synthesizer's RTF, in one run.

    python bench/syn_length_policy.py --recipe egs2/mini_librimix/sepalm1 \\
        [--policies cap:1.5 cap:1.0 exact] [--test_set test]

Each policy re-synthesizes the test set's ŝ tokens with its corrected phonemes (stage 11's
inputs, read from the recipe's exp/ dirs) into <outdir>/<policy>/test/, then one stage-14 scoring
of the three as `no_aligner` rows against the recipe's per-estimate references. `cap:R` stops at
the end token, at most ceil(R * T') frames (R = 1: never longer than what the aligner uses);
`exact` writes T' frames whatever the end token says.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from sepalm_espnet.metrics.systems import append_system
from sepalm_espnet.scoring import ScoringOptions, score_systems
from sepalm_espnet.synthesizer.resynthesize import RTF_COMPONENT, Resynthesizer, SynthesisOptions, synthesize_scp


def policy_options(name: str) -> SynthesisOptions:
    if name == "exact":
        return SynthesisOptions(length_policy="exact")
    kind, _, ratio = name.partition(":")
    if kind != "cap" or not ratio:
        raise SystemExit(f"policy {name!r}: exact or cap:<ratio>")
    return SynthesisOptions(length_policy="cap", max_length_ratio=float(ratio))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="recipe dir after stage 13 (its exp/ and dump/)")
    parser.add_argument("--sep", default="sep_train_sep_sepformer_mini")
    parser.add_argument("--cor_decode", default="cor_train_cor_tinyllama_mini/decode_default")
    parser.add_argument("--syn", default="syn_train_syn_ar_nar_mini")
    parser.add_argument("--syn_model", default="valid.loss.ave.pth")
    parser.add_argument("--codec", default="codec_train_codec_dac_mini/codec.pth")
    parser.add_argument("--tokens", default="codec_train_codec_dac_mini", help="stage 9's token dir name")
    parser.add_argument("--asr_model", required=True, help="faster-whisper CTranslate2 dir of the recipe's scoring")
    parser.add_argument("--policies", nargs="+", default=["cap:1.5", "cap:1.0", "exact"])
    parser.add_argument("--test_set", default="test")
    parser.add_argument("--outdir", default="exp_length_policy")
    args = parser.parse_args()

    recipe, out = Path(args.recipe).resolve(), Path(args.outdir).resolve()
    os.chdir(recipe)  # the recipe's scps hold paths relative to it
    exp = recipe / "exp"
    est = exp / args.sep / "decode" / args.test_set
    manifest = out / "systems.tsv"
    seconds = {}
    for name in args.policies:
        resynthesizer = Resynthesizer.from_files(exp / args.syn / "config.yaml", exp / args.syn / args.syn_model,
                                                 exp / args.codec, options=policy_options(name))
        target = out / name.replace(":", "_") / args.test_set
        started = time.perf_counter()
        rtf = synthesize_scp(resynthesizer, est / args.tokens / "est_tokens.scp", est / "wav.scp", target,
                             exp / args.cor_decode / args.test_set / "g2p" / "phonemes")
        seconds[name] = (time.perf_counter() - started, rtf.to_json()["components"][RTF_COMPONENT]["rtf"])
        append_system(manifest, f"s* with length policy {name}", "no_aligner",
                      str(out / name.replace(":", "_") / "{set}" / "speech.scp"))
    results = score_systems(ScoringOptions(
        manifest=str(manifest), test_sets=(args.test_set,), mixture_dir=str(recipe / "dump/raw/{set}"),
        reference_dir=str(exp / args.sep / "decode/{set}"), asr_backend="faster_whisper", asr_model=args.asr_model,
        sim_backend="resemblyzer", output=str(out / "RESULTS.md")))
    print(f"{'policy':10} {'SI-SNRi':>8} {'WER GT %':>9} {'WER tch %':>10} {'SIM':>6} {'syn RTF':>8} {'wall s':>7}")
    for name in args.policies:
        metrics = results[args.test_set][f"s* with length policy {name}"]
        print(f"{name:10} {metrics['si_snri']:8.2f} {metrics['wer_gt']:9.2f} {metrics['wer_teacher']:10.2f} "
              f"{metrics['sim']:6.3f} {seconds[name][1]:8.3f} {seconds[name][0]:7.1f}")
    print(json.dumps({name: {"wall_s": s, "rtf": r} for name, (s, r) in seconds.items()}))


if __name__ == "__main__":
    main()
