"""Stage 9: DAC tokens of every wav.scp entry -> <output_dir>/<output_name>.{ark,scp}.

JOB runs write <output_name>.JOB.{ark,scp}; `--merge_jobs N` then joins their scps into
<output_name>.scp, checking that together they cover --wav_scp exactly.
"""
import argparse
import logging
import sys
from pathlib import Path

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv
from sepalm_espnet.synthesizer.codec import CodecError, DacCodec
from sepalm_espnet.synthesizer.token_io import merge_token_scps, tokenize_wav_scp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--codec", help="DAC release tag (16khz, 24khz, 44khz) or weights file; not with --merge_jobs")
    parser.add_argument("--wav_scp", required=True, help="`key audio` lines (files or piped commands)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--output_name", default="tokens", help="file stem, e.g. tokens.JOB for a JOB split")
    parser.add_argument("--key_file", default=None, help="only these keys (a JOB split of wav.scp)")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances of similar length encoded together")
    parser.add_argument("--n_codebooks", type=int, default=None, help="keep the first Q codebooks (default: all)")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--merge_jobs", type=int, default=0, help="join <output_name>.{1..N}.scp instead of encoding")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if (args.codec is None) == (args.merge_jobs == 0):
        parser.error("give either --codec (encode) or --merge_jobs (merge)")

    out = Path(args.output_dir)
    try:
        if args.merge_jobs:
            job_scps = [out / f"{args.output_name}.{job}.scp" for job in range(1, args.merge_jobs + 1)]
            merge_token_scps(job_scps, out / f"{args.output_name}.scp", expected_keys=read_kv(args.wav_scp))
            return
        codec = DacCodec.from_pretrained(args.codec, args.n_codebooks, "cuda" if args.ngpu > 0 else "cpu")
        tokenize_wav_scp(codec, args.wav_scp, out / f"{args.output_name}.ark", out / f"{args.output_name}.scp",
                         key_file=args.key_file, batch_size=args.batch_size)
    except (AudioError, CodecError, DataDirError) as exc:
        sys.exit(f"codec_tokenize: {exc}")


if __name__ == "__main__":
    main()
