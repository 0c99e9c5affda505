"""Pack a trained separator into a model-zoo archive (recipe stage 15); see sepalm_espnet/zoo.py."""
import argparse

from sepalm_espnet import zoo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="archive to write, e.g. exp/packed/sepformer.zip")
    parser.add_argument("--separator_config", required=True, help="the training run's config.yaml")
    parser.add_argument("--separator_model", required=True, help="its weights (.pth or .safetensors)")
    parser.add_argument(
        "--separator_fs", type=int, default=None,
        help="rate the separator was trained at, if config.yaml's sample_rate is wrong (ESPnet's default 8000)",
    )
    parser.add_argument("--results", default=None, help="RESULTS.md to ship and show on the model card")
    args = parser.parse_args(argv)

    separator = {zoo.CONFIG_ROLE: args.separator_config, zoo.MODEL_ROLE: args.separator_model}
    overrides = {zoo.SEPARATOR_COMPONENT: {"sample_rate": args.separator_fs}} if args.separator_fs else None
    sources = {"separator_config": args.separator_config, "separator_model": args.separator_model}
    archive = zoo.pack(
        args.out, {zoo.SEPARATOR_COMPONENT: separator}, results_md=args.results,
        extra={"packed_from": sources}, config_overrides=overrides,
    )
    print(archive)


if __name__ == "__main__":
    main()
