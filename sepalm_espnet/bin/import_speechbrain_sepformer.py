"""Import a SpeechBrain SepFormer (hub id or local dir with hyperparams.yaml, encoder.ckpt,
masknet.ckpt, decoder.ckpt) as a separator experiment that stage 4 and packing use unchanged.

    python -m sepalm_espnet.bin.import_speechbrain_sepformer \\
        --src speechbrain/sepformer-whamr16k --out exp/sep_sepformer-whamr16k --fs 16000
"""
from sepalm_espnet.separator.registry import DEFAULT_CHECKPOINT
from sepalm_espnet.separator.speechbrain_import import import_sepformer
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--src", required=True, help="SpeechBrain model dir or Hugging Face hub id")
    parser.add_argument("--out", required=True, help="experiment dir to write (refused if it holds an import or a model)")
    parser.add_argument("--model_name", default=DEFAULT_CHECKPOINT, help="checkpoint file name stage 4 reads")
    parser.add_argument("--fs", type=int, help="the recipe's rate: a checkpoint of another rate is refused")
    parser.add_argument("--sample_rate", type=int, help="the checkpoint's rate, when its hyperparams.yaml lacks one")
    args = cli.parse_args(parser, argv)
    cli.run_main("import_speechbrain_sepformer", lambda: import_sepformer(
        args.src, args.out, args.model_name, fs=args.fs, sample_rate=args.sample_rate))


if __name__ == "__main__":
    main()
