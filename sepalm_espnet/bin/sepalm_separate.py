"""Separate mixtures with a packed SepALM model (console script `sepalm-separate`).

    sepalm-separate mix.wav [more.wav | a_dir ...] --model sepalm.zip --outdir out/
        -> out/mix_spk1.wav, out/mix_spk2.wav (input rate and length), out/mix.json (transcripts);
           inputs in different folders keep their relative paths (out/a/mix_spk1.wav, ...)
    sepalm-separate --wav_scp wav.scp [--key_file keys.1.scp] --model sepalm.zip --outdir out/
        -> out/wavs/<key>_spk<n>.wav, out/spk<n>.scp, out/text_pt_spk<n>, out/text_ct_spk<n>,
           out/status_spk<n> (the corrector's: parsed or its fallback)
Both write out/rtf.json (real-time factor per component). --mode picks a paper Table 3 row.
Existing outputs are never replaced without --overwrite.
"""
import argparse
import logging
import sys

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.pipeline import MODES, PipelineOptions
from sepalm_espnet.separate_files import separate_files
from sepalm_espnet.utils.cli import LOG_FORMAT, add_dataclass_options, options_from_args


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="audio files or directories of them (any rate, mono or multi-channel)")
    parser.add_argument("--wav_scp", help="batch mode: `key audio` lines instead of files")
    parser.add_argument("--key_file", help="batch mode: only these keys (a JOB split)")
    parser.add_argument("--model", required=True, help="packed SepALM archive (stage 15) or its unpacked dir")
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run")
    parser.add_argument("--mode", default="sepalm", choices=MODES, help="no_aligner: Table 3 (g); separator_only: (d)")
    parser.add_argument("--zero_shot", action="store_true", help="corrector without its LoRA adapter: Table 3 (h)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    add_dataclass_options(parser, PipelineOptions)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    try:
        separate_files(args.inputs, args.outdir, args.model, args.wav_scp, args.key_file, args.overwrite,
                       device=args.device, mode=args.mode, zero_shot=args.zero_shot,
                       options=options_from_args(args, PipelineOptions))
    except (AudioError, DataDirError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"sepalm-separate: {exc}")


if __name__ == "__main__":
    main()
