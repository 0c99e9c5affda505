"""Stage 2. `shard`: the job worker, dumps one JOB's audio at --fs (resampled, downmixed) with
its tables; `finish`: after the merge, adds utt2num_samples and the transcripts, then checks
the dumped dir (lengths of mixture and references agree) before it is marked done."""
from sepalm_espnet.data.format import finish_formatted_dir, format_job
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("mode", choices=["shard", "finish"])
    parser.add_argument("--src_dir", required=True, help="the Kaldi data dir (data/<set>)")
    parser.add_argument("--dir", help="finish: the merged dump dir")
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--audio_format", choices=["wav", "flac"], default="wav")
    parser.add_argument("--key_file", default=None, help="shard: keys of this JOB")
    parser.add_argument("--output_dir", help="shard: the worker's output directory")
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    if (args.mode == "shard") != (args.output_dir is not None) or (args.mode == "finish") != (args.dir is not None):
        parser.error("shard takes --output_dir, finish takes --dir")
    if args.mode == "shard":
        cli.run_main("format_data_dir", lambda: format_job(args.src_dir, args.output_dir, args.fs,
                                                            args.audio_format, args.key_file))
    else:
        cli.run_main("format_data_dir", lambda: finish_formatted_dir(args.src_dir, args.dir))


if __name__ == "__main__":
    main()
