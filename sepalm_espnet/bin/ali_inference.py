"""Stage 13 worker: s̃ from the separated ŝ and the re-synthesized s* of one JOB's estimates.

Writes <output_dir>/wavs/<key>.wav (float WAV at the aligner's rate) and speech.scp.
"""
from sepalm_espnet.aligner.inference import AlignerInference, align_scp
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--train_config", default=None, help="default: config.yaml beside --model_file")
    parser.add_argument("--model_file", required=True, help="trained aligner weights (.pth or .safetensors)")
    parser.add_argument("--est_scp", required=True, help="separated estimates ŝ")
    parser.add_argument("--syn_scp", required=True, help="their re-synthesized s* (any length: cropped or padded)")
    cli.add_job_options(parser)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        aligner = AlignerInference.from_files(args.train_config, args.model_file, args.device)
        align_scp(aligner, args.est_scp, args.syn_scp, args.output_dir, args.key_file)

    cli.run_main("ali_inference", work)


if __name__ == "__main__":
    main()
