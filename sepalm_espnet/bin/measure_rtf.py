"""Stage 14: real-time factor per component of a packed SepALM system on 5 s inputs (rtf.json).

    python -m sepalm_espnet.bin.measure_rtf --model exp/rtf/sepalm.zip --wav_scp dump/raw/test/wav.scp \\
        --mode sepalm --output exp/ali_x/decode_y/test/score/rtf.json
The scp's first --utterances mixtures are cut or looped to --seconds. --mode as sepalm-separate.
"""
import argparse
import logging
import sys

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.format import load_scp_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv
from sepalm_espnet.pipeline import MODES, SepALM, measure_rtf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="packed SepALM archive or its unpacked dir")
    parser.add_argument("--wav_scp", required=True)
    parser.add_argument("--output", required=True, help="rtf.json to write")
    parser.add_argument("--mode", default="sepalm", choices=MODES)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--zero_shot", action="store_true", help="corrector without its LoRA adapter")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        model = SepALM.from_pretrained(args.model, device=args.device, mode=args.mode, zero_shot=args.zero_shot)
        entries = list(read_kv(args.wav_scp).items())[: args.utterances]
        inputs = [load_scp_audio(value, f"{args.wav_scp} (key {key})") for key, value in entries]
        meter = measure_rtf(model, inputs, args.seconds)
    except (AudioError, DataDirError, ValueError) as exc:
        sys.exit(f"measure_rtf: {exc}")
    meter.write(args.output)
    logging.info("RTF %.3f (%s)", meter.rtf, ", ".join(f"{name} {t.rtf:.3f}" for name, t in meter.components.items()))


if __name__ == "__main__":
    main()
