"""Stage 14: RESULTS.md from the metric files of every (system, test set) score directory.

    python -m sepalm_espnet.bin.make_results --output exp/RESULTS.md --test_sets test \\
        --system "SepFormer=exp/sep_x/decode/{test_set}/score" --metadata config=conf/x.yaml
A score directory may hold summary.json (separation, or score_wer's WER), wer_summary.json,
speech_summary.json and rtf.json; whatever is there is merged, also over the directories of a
NAME given twice (`--system X=exp/x/score/{test_set} --system X=exp/x/score_wer/{test_set}`).
Or every system of a systems manifest, from the score dirs stage 14 made (no scoring; a
system without finished scores is shown "not scored"; bin/score_systems.py scores and then
writes this same table):
    python -m sepalm_espnet.bin.make_results --output exp/RESULTS.md --test_sets test --manifest exp/systems.tsv
Columns: the separation ones plus every WER/SIM/fallback/RTF column some system has
(`--columns auto`), or presets and metric keys in table order, e.g. `--columns separation sim rtf`.
"""
from __future__ import annotations

import argparse
import sys

from sepalm_espnet.metrics.report import (
    COLUMN_PRESETS,
    columns_present,
    read_system_metrics_dirs,
    select_columns,
    write_results,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--system", action="append", default=[], metavar="NAME=DIR_WITH_{test_set}")
    parser.add_argument("--manifest", help="systems manifest (metrics.systems): its systems' score dirs")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--columns", nargs="+", default=["auto"],
                        help=f"auto, or presets {sorted(COLUMN_PRESETS)} and metric keys, in table order")
    args = parser.parse_args(argv)
    if not args.system and not args.manifest:
        parser.error("give --system NAME=DIR (repeatable) or --manifest")
    try:
        systems = {}  # a NAME given again adds a directory (e.g. its WER scores kept elsewhere)
        for item in args.system:
            name, sep, directory = item.partition("=")
            if not sep:
                parser.error(f"--system {item!r}: expected NAME=DIR")
            systems.setdefault(name, []).append(directory)
        results = {t: {name: read_system_metrics_dirs([d.format(test_set=t) for d in dirs]) for name, dirs in systems.items()}
                   for t in args.test_sets}
        if args.manifest:
            from sepalm_espnet.scoring import collect_results
            from sepalm_espnet.metrics.systems import read_systems

            for t, rows in collect_results(read_systems(args.manifest), args.test_sets).items():
                results[t].update(rows)
        columns = columns_present(results) if args.columns == ["auto"] else select_columns(args.columns)
        write_results(args.output, results, columns, metadata=dict(item.split("=", 1) for item in args.metadata))
    except ValueError as exc:
        sys.exit(f"make_results: {exc}")


if __name__ == "__main__":
    main()
