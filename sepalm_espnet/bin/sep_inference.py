"""Stage 4 worker: separate one JOB's mixtures of a data dir, segment-wise (any length, bounded
memory), then match the estimates to the references (PIT) and write the per-estimate dir.

Writes <output_dir>/wavs/<key>_spk<n>.wav, spk<n>.scp, permutation and the flat wav.scp,
ref.scp, text keyed <key>_spk<n> (see separator/estimates.py); for SLM-SS also decode_status
(per mixture, the status of each separator call: ok or the length cap it hit).
"""
from pathlib import Path

from sepalm_espnet.data.kaldi_dir import write_kv
from sepalm_espnet.separator.estimates import write_estimate_dir
from sepalm_espnet.separator.long_audio import LongAudioSeparator, SegmentOptions, separate_scp
from sepalm_espnet.separator.registry import load_separator
from sepalm_espnet.slm_ss.inference import STATUS_FILE, SlmSsDecodeOptions
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--data_dir", required=True, help="wav.scp (mixtures), spk<n>.scp and text_spk<n> if any")
    parser.add_argument("--model_file", required=True, help="trained weights (.pth)")
    parser.add_argument("--train_config", default=None, help="default: config.yaml beside --model_file")
    parser.add_argument("--fs", type=int, required=True, help="sample rate the model was trained at")
    parser.add_argument("--resample", type=cli.str2bool, default=False, help="resample other rates instead of refusing")
    cli.add_decoder_options(parser, SegmentOptions)
    cli.add_dataclass_options(parser, SlmSsDecodeOptions)  # used by an SLM-SS model only
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        loaded = load_separator(args.train_config, args.model_file, args.device,
                                cli.options_from_args(args, SlmSsDecodeOptions))
        if loaded.fs is not None and loaded.fs != args.fs:
            raise ValueError(f"{args.model_file}: the model separates {loaded.fs} Hz audio, not --fs {args.fs}")
        separator = LongAudioSeparator(loaded.separate, loaded.num_spk, args.fs,
                                       options=cli.options_from_args(args, SegmentOptions),
                                       min_samples=loaded.min_samples)
        statuses = {}

        def record(key):
            if loaded.statuses is not None:
                statuses[key] = ",".join(loaded.statuses) or "silent"
                loaded.statuses.clear()

        outputs = separate_scp(separator, Path(args.data_dir) / "wav.scp", args.output_dir, args.key_file,
                               args.resample, after_each=record)
        write_estimate_dir(args.data_dir, args.output_dir, sorted(outputs))
        if loaded.statuses is not None:
            write_kv(Path(args.output_dir) / STATUS_FILE, statuses)

    cli.run_main("sep_inference", work)


if __name__ == "__main__":
    main()
