"""Convert a fairseq HuBERT checkpoint (SpeechGPT's mHuBERT) into a transformers HubertModel dir,
once, for `--unit_hubert` (the checkpoint is unpickled: trusted files only).

    python -m sepalm_espnet.bin.convert_fairseq_hubert \\
        --checkpoint mhubert_base_vp_en_es_fr_it3.pt --output_dir downloads/mhubert_base_vp_en_es_fr_it3
"""
from sepalm_espnet.corrector.fairseq_hubert import convert_fairseq_hubert
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="fairseq HuBERT .pt (e.g. mhubert_base_vp_en_es_fr_it3.pt)")
    parser.add_argument("--output_dir", required=True, help="new transformers dir (refused if it exists)")
    args = cli.parse_args(parser, argv)
    cli.run_main("convert_fairseq_hubert", lambda: convert_fairseq_hubert(args.checkpoint, args.output_dir))


if __name__ == "__main__":
    main()
