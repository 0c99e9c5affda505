"""Train a small DAC codec on wav.scp audio (descript's losses); report its round-trip quality.

Writes <output_dir>/codec.pth (DAC weights format: `--codec` of codec_tokenize and
syn_inference), config.yaml (the options used) and, with --valid_wav_scp, valid.json (mean
round-trip SI-SNR in dB and wideband PESQ). A finished output directory is left alone.
"""
import argparse
import logging
import sys

import torch

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.synthesizer.codec import CodecError
from sepalm_espnet.synthesizer.codec_train import CodecTrainError, load_config, train_codec


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML: arch, max_steps, batch_size, lambdas, ...")
    parser.add_argument("--wav_scp", required=True, nargs="+", help="training audio lists")
    parser.add_argument("--valid_wav_scp", default=None, help="audio to score the round trip on")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=None, help="override the config's max_steps")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    torch.set_flush_denormal(True)  # DAC's Snake activations otherwise slow CPU training 2x
    try:
        config = load_config(args.config, args.max_steps)
        train_codec(config, args.wav_scp, args.output_dir, args.valid_wav_scp, args.device)
    except (AudioError, CodecError, CodecTrainError, DataDirError) as exc:
        sys.exit(f"codec_train: {exc}")


if __name__ == "__main__":
    main()
