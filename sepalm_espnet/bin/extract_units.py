"""Stage 6 worker: speech units (`key 12 45 7`) of one JOB's keys of several scps at once.
The feature extractor (type, layer, normalisation) is the one kmeans.yaml recorded at fitting.
"""
from sepalm_espnet.corrector.units import build_feature_extractor, extract_units_scp, load_kmeans
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--kmeans_dir", required=True, help="fit_kmeans output: centers.npy + kmeans.yaml")
    cli.add_scp_outputs(parser, "units file")
    parser.add_argument("--hubert_dir", help="where this machine keeps the HuBERT that kmeans.yaml names")
    parser.add_argument("--keep_repeats", type=cli.str2bool, default=False, help="do not merge runs of one unit")
    cli.add_job_options(parser)
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    outputs = cli.scp_outputs(parser, args)

    def work():
        quantizer, feature_type, feature_conf = load_kmeans(args.kmeans_dir)
        if args.hubert_dir:
            if feature_type != "hubert":
                raise ValueError(f"--hubert_dir given but {args.kmeans_dir} uses {feature_type} features")
            feature_conf = {**feature_conf, "model": args.hubert_dir}
        extractor = build_feature_extractor(feature_type, feature_conf, args.device)
        for wav_scp, output in outputs:
            extract_units_scp(extractor, quantizer, wav_scp, output, args.key_file, not args.keep_repeats)

    cli.run_main("extract_units", work)


if __name__ == "__main__":
    main()
