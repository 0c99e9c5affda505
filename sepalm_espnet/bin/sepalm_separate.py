"""Separate mixtures with a packed SepALM model (console script `sepalm-separate`).

    sepalm-separate mix.wav [more.wav ...] --model sepalm.zip --outdir out/
        -> out/mix_spk1.wav, out/mix_spk2.wav (input rate and length), out/mix.json (transcripts)
    sepalm-separate --wav_scp wav.scp [--key_file keys.1.scp] --model sepalm.zip --outdir out/
        -> out/wavs/<key>_spk<n>.wav, out/spk<n>.scp, out/text_pt_spk<n>, out/text_ct_spk<n>,
           out/status_spk<n> (the corrector's: parsed or its fallback)
Both write out/rtf.json (real-time factor per component). --mode picks a paper Table 3 row.
"""
import argparse
import json
import logging
import sys
from pathlib import Path

from sepalm_espnet.data.audio import AudioError, read_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, atomic_path, read_key_file, select_entries
from sepalm_espnet.pipeline import MODES, SepALM, separate_entries, write_speakers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="audio files (any rate, mono or multi-channel)")
    parser.add_argument("--wav_scp", help="batch mode: `key audio` lines instead of files")
    parser.add_argument("--key_file", help="batch mode: only these keys (a JOB split)")
    parser.add_argument("--model", required=True, help="packed SepALM archive (stage 15) or its unpacked dir")
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--mode", default="sepalm", choices=MODES, help="no_aligner: Table 3 (g); separator_only: (d)")
    parser.add_argument("--zero_shot", action="store_true", help="corrector without its LoRA adapter: Table 3 (h)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if bool(args.inputs) == bool(args.wav_scp):
        parser.error("give audio files or --wav_scp, not both")
    outdir = Path(args.outdir)
    missing = [path for path in args.inputs if not Path(path).is_file()]
    if missing:  # before minutes of model loading
        sys.exit(f"sepalm-separate: {missing[0]}: no such file")
    try:
        # Keys become file names: the scp is read (and its keys checked) before the model loads.
        entries = select_entries(args.wav_scp, read_key_file(args.key_file)) if args.wav_scp else {}
        model = SepALM.from_pretrained(args.model, device=args.device, mode=args.mode, zero_shot=args.zero_shot)
        if args.wav_scp:
            separate_entries(model, entries, args.wav_scp, outdir)
        for path in map(Path, args.inputs):
            samples, fs = read_audio(path)
            speakers = model.separate(samples, fs)
            files = write_speakers(outdir, path.stem, speakers, fs)
            report = [dict(file=str(f), preliminary=s.preliminary, corrected=s.corrected, status=s.status)
                      for f, s in zip(files, speakers)]
            with atomic_path(outdir / f"{path.stem}.json") as tmp:
                tmp.write_text(json.dumps({"input": str(path), "speakers": report}, indent=2) + "\n")
        model.rtf.write(outdir / "rtf.json")
    except (AudioError, DataDirError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"sepalm-separate: {exc}")


if __name__ == "__main__":
    main()
