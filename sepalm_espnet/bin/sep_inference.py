"""Separate a wav.scp with a trained ESPnet enh model, segment-wise (any length, bounded memory).

Writes <output_dir>/wavs/<key>_spk{n}.wav (float WAV) and sorted <output_dir>/spk{n}.scp.
"""
import argparse
import logging

from espnet2.utils.types import str2bool

from sepalm_espnet.separator.long_audio import LongAudioSeparator, separate_scp
from sepalm_espnet.separator.registry import enh_model_separate_fn, load_enh_model, min_input_samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--wav_scp", required=True, help="mixtures: `key path` lines")
    parser.add_argument("--key_file", default=None, help="only these keys (a JOB split of wav.scp)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--model_file", required=True, help="trained weights (.pth)")
    parser.add_argument("--train_config", default=None, help="default: config.yaml beside --model_file")
    parser.add_argument("--fs", type=int, required=True, help="sample rate the model was trained at")
    parser.add_argument("--resample", type=str2bool, default=False, help="resample other rates instead of refusing")
    parser.add_argument("--segment_sec", type=float, default=8.0, help="model input length per call")
    parser.add_argument("--hop_sec", type=float, default=4.0, help="segment shift (< segment_sec)")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")

    model, _ = load_enh_model(args.train_config, args.model_file, "cuda" if args.ngpu > 0 else "cpu")
    separator = LongAudioSeparator(
        enh_model_separate_fn(model),
        model.num_spk,
        args.fs,
        segment_sec=args.segment_sec,
        hop_sec=args.hop_sec,
        min_samples=min_input_samples(model),
    )
    separate_scp(separator, args.wav_scp, args.output_dir, key_file=args.key_file, resample=args.resample)


if __name__ == "__main__":
    main()
