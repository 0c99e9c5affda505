"""Stage 14: score every system of the manifest on every test set, then write RESULTS.md.

    python -m sepalm_espnet.bin.score_systems --manifest exp/systems.tsv --test_sets test \\
        --mixture_dir "dump/raw/{set}" --reference_dir "exp/sep_x/decode/{set}" \\
        --teacher_text "exp/sep_x/decode/{set}/teacher/text_ct" --asr_backend faster_whisper \\
        --asr_model tools/models/whisper-base-ct2 --sim_backend resemblyzer \\
        --rtf_archive exp/rtf/sepalm.zip --output exp/RESULTS.md --metadata "date=2025-01-31"
Score directories, their files and the up-to-date check: sepalm_espnet.scoring;
the manifest: sepalm_espnet.metrics.systems.
"""
import argparse

from sepalm_espnet.scoring import ScoringOptions, score_systems
from sepalm_espnet.utils.cli import add_dataclass_options, options_from_args, parse_args, run_main


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--log_level", default="INFO")
    add_dataclass_options(parser, ScoringOptions)
    args = parse_args(parser, argv)
    run_main("score_systems", lambda: score_systems(options_from_args(args, ScoringOptions)))


if __name__ == "__main__":
    main()
