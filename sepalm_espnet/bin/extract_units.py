"""Stage 6: speech units of separated speech, one Kaldi text per scp (`key 12 45 7`, sorted).

    python -m sepalm_espnet.bin.extract_units --kmeans_dir exp/kmeans \\
        --wav_scp exp/sep/decode/train/spk1.scp exp/sep/decode/train/spk2.scp \\
        --output exp/units/train/units_spk1.1 exp/units/train/units_spk2.1 --key_file keys.1.scp
The feature extractor (type, layer, normalisation) is the one kmeans.yaml recorded at fitting.
"""
import argparse
import logging
import sys

from sepalm_espnet.corrector.units import build_feature_extractor, extract_units_scp, load_kmeans


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kmeans_dir", required=True, help="fit_kmeans output: centers.npy + kmeans.yaml")
    parser.add_argument("--wav_scp", required=True, nargs="+")
    parser.add_argument("--output", required=True, nargs="+", help="one units file per --wav_scp")
    parser.add_argument("--key_file", help="only these keys (a JOB split)")
    parser.add_argument("--hubert_dir", help="where this machine keeps the HuBERT that kmeans.yaml names")
    parser.add_argument("--keep_repeats", action="store_true", help="do not merge runs of one unit")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if len(args.wav_scp) != len(args.output):
        parser.error(f"{len(args.wav_scp)} --wav_scp but {len(args.output)} --output")

    try:
        quantizer, feature_type, feature_conf = load_kmeans(args.kmeans_dir)
        if args.hubert_dir:
            if feature_type != "hubert":
                parser.error(f"--hubert_dir given but {args.kmeans_dir} uses {feature_type} features")
            feature_conf = {**feature_conf, "model": args.hubert_dir}
        extractor = build_feature_extractor(feature_type, feature_conf, args.device)
        for wav_scp, output in zip(args.wav_scp, args.output):
            extract_units_scp(extractor, quantizer, wav_scp, output, args.key_file, not args.keep_repeats)
    except ValueError as exc:  # AudioError, DataDirError, bad options: the message says what
        sys.exit(f"extract_units: {exc}")


if __name__ == "__main__":
    main()
