"""Corpus WER of transcripts, the speakers' (reference, hypothesis) pairs pooled (stage 14 scores
the manifest's transcript systems through bin/score_systems.py).

    python -m sepalm_espnet.bin.score_wer --ref exp/asr/test/text_ct_spk1 exp/asr/test/text_ct_spk2 \\
        --hyp exp/cor/decode/test/spk1/text_ct exp/cor/decode/test/spk2/text_ct \\
        --output exp/cor/decode/test/score/wer_summary.json
Writes {"wer": percent, "errors", "ref_words", "n_utterances", "substitutions", "deletions",
"insertions"}; both sides normalised (text_norm.normalize_text). --key_file scores only its keys.
`--metric wer_teacher` names the figures for a RESULTS.md column instead (wer_teacher,
wer_teacher_errors, ...): one transcript scored against two references fills two columns.
"""
import argparse
import json
import sys

from sepalm_espnet.data.kaldi_dir import read_key_file
from sepalm_espnet.metrics.wer import corpus_wer, write_wer_summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", nargs="+", required=True, help="reference Kaldi texts, one per speaker")
    parser.add_argument("--hyp", nargs="+", required=True, help="hypothesis Kaldi texts, same order")
    parser.add_argument("--key_file", help="score only these keys")
    parser.add_argument("--output", required=True, help="summary JSON (wer_summary.json in a score directory)")
    parser.add_argument("--metric", default="wer", help="name of the WER figure, e.g. wer_teacher or wer_gt")
    args = parser.parse_args(argv)
    try:
        summary = corpus_wer(args.ref, args.hyp, read_key_file(args.key_file))
    except ValueError as exc:
        sys.exit(f"score_wer: {exc}")
    if args.metric != "wer":
        summary = {args.metric if key == "wer" else f"{args.metric}_{key}": value for key, value in summary.items()}
    write_wer_summary(args.output, summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
