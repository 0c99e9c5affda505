"""Stage 6: fit the speech-unit k-means on frame features of training speech.

    python -m sepalm_espnet.bin.fit_kmeans --feature_type hubert --hubert_dir $MHUBERT --layer 11 \\
        --wav_scp dump/raw/train/spk1.scp dump/raw/train/spk2.scp --n_clusters 1000 --output_dir exp/kmeans
writes exp/kmeans/{centers.npy,kmeans.yaml}. `--sklearn_model km.bin` converts a pickled
sklearn k-means (SpeechGPT's mHuBERT L11 km1000) instead of fitting: trusted files only.
"""
import argparse
import logging
import sys

from sepalm_espnet.corrector.units import (
    FEATURE_EXTRACTORS, build_feature_extractor, fit_kmeans_on_scps, import_sklearn_kmeans, load_kmeans, save_kmeans,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print_size", metavar="KMEANS_DIR", help="print the cluster count of a k-means dir and exit")
    parser.add_argument("--feature_type", choices=sorted(FEATURE_EXTRACTORS))
    parser.add_argument("--hubert_dir", help="hubert: transformers HubertModel dir or hub id")
    parser.add_argument("--layer", type=int, default=11, help="hubert: transformer layer (0: its input)")
    parser.add_argument("--wav_scp", nargs="+", help="audio scps whose frames are clustered")
    parser.add_argument("--sklearn_model", help="convert this joblib sklearn k-means instead of fitting")
    parser.add_argument("--n_clusters", type=int, default=1000)
    parser.add_argument("--max_frames", type=int, default=500_000, help="frames of shuffled utterances used")
    parser.add_argument("--batch_size", type=int, default=10_000, help="MiniBatchKMeans batch (frames)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="feature extraction device (cpu, cuda)")
    parser.add_argument("--output_dir")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if args.print_size:
        print(load_kmeans(args.print_size)[0].n_clusters)
        return
    if not (args.feature_type and args.output_dir):
        parser.error("--feature_type and --output_dir are required")
    if (args.feature_type == "hubert") != (args.hubert_dir is not None):
        parser.error("--hubert_dir is required with --feature_type hubert and only then")
    if (args.wav_scp is None) == (args.sklearn_model is None):
        parser.error("give either --wav_scp (fit) or --sklearn_model (convert)")

    feature_conf = {"model": args.hubert_dir, "layer": args.layer} if args.hubert_dir else {}
    try:
        extractor = build_feature_extractor(args.feature_type, feature_conf, args.device)
        if args.sklearn_model:
            quantizer = import_sklearn_kmeans(args.sklearn_model)
        else:
            quantizer = fit_kmeans_on_scps(extractor, args.wav_scp, args.n_clusters, args.seed,
                                           args.max_frames, args.batch_size)
        save_kmeans(args.output_dir, quantizer, args.feature_type, extractor.config)
    except ValueError as exc:  # AudioError, DataDirError, bad options: the message says what
        sys.exit(f"fit_kmeans: {exc}")


if __name__ == "__main__":
    main()
