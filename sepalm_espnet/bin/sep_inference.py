"""Stage 4 worker: separate one JOB's mixtures of a data dir, segment-wise (any length, bounded
memory), then match the estimates to the references (PIT) and write the per-estimate dir.

Writes <output_dir>/wavs/<key>_spk<n>.wav, spk<n>.scp, permutation and the flat wav.scp,
ref.scp, text keyed <key>_spk<n> (see separator/estimates.py).
"""
from pathlib import Path

from sepalm_espnet.separator.estimates import write_estimate_dir
from sepalm_espnet.separator.long_audio import LongAudioSeparator, SegmentOptions, separate_scp
from sepalm_espnet.separator.registry import enh_model_separate_fn, load_enh_model, min_input_samples
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--data_dir", required=True, help="wav.scp (mixtures), spk<n>.scp and text_spk<n> if any")
    parser.add_argument("--model_file", required=True, help="trained weights (.pth)")
    parser.add_argument("--train_config", default=None, help="default: config.yaml beside --model_file")
    parser.add_argument("--fs", type=int, required=True, help="sample rate the model was trained at")
    parser.add_argument("--resample", type=cli.str2bool, default=False, help="resample other rates instead of refusing")
    cli.add_decoder_options(parser, SegmentOptions)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        model, _ = load_enh_model(args.train_config, args.model_file, args.device)
        separator = LongAudioSeparator(enh_model_separate_fn(model), model.num_spk, args.fs,
                                       options=cli.options_from_args(args, SegmentOptions),
                                       min_samples=min_input_samples(model))
        outputs = separate_scp(separator, Path(args.data_dir) / "wav.scp", args.output_dir, args.key_file, args.resample)
        write_estimate_dir(args.data_dir, args.output_dir, sorted(outputs))

    cli.run_main("sep_inference", work)


if __name__ == "__main__":
    main()
