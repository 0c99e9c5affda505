"""Real-time factor per component of a packed SepALM system on 5 s inputs (rtf.json), per mode.

    python -m sepalm_espnet.bin.measure_rtf --model exp/rtf/sepalm.zip --wav_scp dump/raw/test/wav.scp \\
        --modes separator_only sepalm --outputs exp/sep_x/decode/test/score/rtf.json exp/ali_x/.../rtf.json
The scp's first --utterances mixtures are cut or looped to --seconds. Modes as sepalm-separate;
the models are loaded once for all of them. Stage 14 measures the same way inside
bin/score_systems.py (--rtf_archive), whose defaults these are.
"""
import argparse
import logging
import sys

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.scoring import load_rtf_system, measure_mode
from sepalm_espnet.scoring import ScoringOptions
from sepalm_espnet.metrics.systems import PIPELINE_MODES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="packed SepALM archive or its unpacked dir")
    parser.add_argument("--wav_scp", required=True)
    parser.add_argument("--modes", nargs="+", default=["sepalm"], choices=PIPELINE_MODES)
    parser.add_argument("--outputs", nargs="+", required=True, help="one rtf.json per --modes")
    parser.add_argument("--seconds", type=float, default=ScoringOptions.rtf_seconds)
    parser.add_argument("--utterances", type=int, default=ScoringOptions.rtf_utterances)
    parser.add_argument("--corrector_config", help="corrector decoding config (YAML, e.g. zero_shot: true)")
    parser.add_argument("--zero_shot", action="store_true", help="corrector without its LoRA adapter")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if len(args.modes) != len(args.outputs):
        parser.error(f"{len(args.modes)} --modes but {len(args.outputs)} --outputs")
    try:
        model = load_rtf_system(args.model, args.device, args.corrector_config, zero_shot=args.zero_shot or None)
        for mode, output in zip(args.modes, args.outputs):
            measure_mode(model, mode, args.wav_scp, args.utterances, args.seconds).write(output)
    except (AudioError, DataDirError, ValueError) as exc:
        sys.exit(f"measure_rtf: {exc}")


if __name__ == "__main__":
    main()
