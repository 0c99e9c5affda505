"""Stage 2 worker: `shard` dumps one JOB's keys; `merge` joins the shards and validates."""
import argparse
import logging

from sepalm_espnet.data.format import format_shard, merge_formatted_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["shard", "merge"])
    parser.add_argument("src_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--audio_format", choices=["wav", "flac"], default="wav")
    parser.add_argument("--key_file", default=None, help="shard mode: keys of this JOB")
    parser.add_argument("--shard_name", default="1", help="shard mode: the JOB id")
    parser.add_argument("--num_shards", type=int, default=1, help="merge mode: the JOB count")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.mode == "shard":
        format_shard(args.src_dir, args.out_dir, args.fs, args.audio_format, args.key_file, args.shard_name)
    else:
        merge_formatted_dir(args.src_dir, args.out_dir, args.num_shards)


if __name__ == "__main__":
    main()
