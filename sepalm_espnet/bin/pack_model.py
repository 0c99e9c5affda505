"""Pack a trained system into a model-zoo archive (recipe stage 15); see sepalm_espnet/zoo.py.

Separator only (the original form):
    python -m sepalm_espnet.bin.pack_model --out exp/packed/sep.zip \\
        --separator_config exp/sep/config.yaml --separator_model exp/sep/valid.si_snr_loss.ave.pth
Any components, each `NAME:ROLE=PATH[,ROLE=PATH...]` (a directory packs every file under it):
    python -m sepalm_espnet.bin.pack_model --out exp/packed/sepalm.zip \\
        --component separator:config=exp/sep/config.yaml,model=exp/sep/model.pth \\
        --component kmeans:centers=exp/kmeans/centers.npy,kmeans=exp/kmeans/kmeans.yaml \\
        --component corrector:config=exp/cor/config.yaml,model=exp/cor/model.pth,tokenizer=exp/cor/tokenizer \\
        --component codec:codec=exp/codec/codec.pth \\
        --component_file tokens units "data/token list,with comma.txt" --results exp/RESULTS.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from sepalm_espnet import zoo


def parse_component(spec: str) -> Tuple[str, Dict[str, str]]:
    """`NAME:ROLE=PATH[,ROLE=PATH...]` -> (NAME, {ROLE: PATH})."""
    name, sep, files = spec.partition(":")
    if not sep or not name or not files:
        raise ValueError(f"--component {spec!r}: expected NAME:ROLE=PATH[,ROLE=PATH...]")
    roles: Dict[str, str] = {}
    for item in files.split(","):
        role, sep, path = item.partition("=")
        if not sep or not role or not path or role in roles:
            raise ValueError(f"--component {spec!r}: bad or repeated ROLE=PATH item {item!r}")
        roles[role] = path
    return name, roles


def codec_weights_file(path: str) -> str:
    """A DAC release tag (16khz, ...) packs the weights file dac keeps in its cache."""
    if Path(path).is_file():
        return path
    import dac.utils

    return str(dac.utils.download(model_type=path))


def collect_components(args: argparse.Namespace) -> Dict[str, Dict[str, str]]:
    components: Dict[str, Dict[str, str]] = {}
    if args.separator_config or args.separator_model:
        if not (args.separator_config and args.separator_model):
            raise ValueError("--separator_config and --separator_model go together")
        components[zoo.SEPARATOR_COMPONENT] = {zoo.CONFIG_ROLE: args.separator_config, zoo.MODEL_ROLE: args.separator_model}
    triples: List[Tuple[str, str, str]] = [(n, r, p) for n, roles in map(parse_component, args.component) for r, p in roles.items()]
    for name, role, path in triples + [tuple(item) for item in args.component_file]:
        roles = components.setdefault(name, {})
        if role in roles:
            raise ValueError(f"component {name}: role {role} given twice")
        roles[role] = path
    if zoo.CODEC_COMPONENT in components and "codec" in components[zoo.CODEC_COMPONENT]:
        components[zoo.CODEC_COMPONENT]["codec"] = codec_weights_file(components[zoo.CODEC_COMPONENT]["codec"])
    if not components:
        raise ValueError("nothing to pack: give --separator_config/--separator_model, --component or --component_file")
    return components


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="archive to write, e.g. exp/packed/sepformer.zip")
    parser.add_argument("--separator_config", help="the separator training run's config.yaml")
    parser.add_argument("--separator_model", help="its weights (.pth or .safetensors)")
    parser.add_argument(
        "--separator_fs", type=int, default=None,
        help="rate the separator was trained at, if config.yaml's sample_rate is wrong (ESPnet's default 8000)",
    )
    parser.add_argument("--component", action="append", default=[], metavar="NAME:ROLE=PATH[,ROLE=PATH...]")
    parser.add_argument("--component_file", action="append", default=[], nargs=3, metavar=("NAME", "ROLE", "PATH"),
                        help="one file or directory of a component (for paths holding ',' or '=')")
    parser.add_argument("--results", default=None, help="RESULTS.md to ship and show on the model card")
    parser.add_argument("--model_card", default=None, help="README.md to ship instead of the generated card")
    args = parser.parse_args(argv)
    try:
        components = collect_components(args)
        overrides = {zoo.SEPARATOR_COMPONENT: {"sample_rate": args.separator_fs}} if args.separator_fs else None
        sources = {f"{name}_{role}": path for name, roles in components.items() for role, path in roles.items()}
        archive = zoo.pack(
            args.out, components, results_md=args.results, extra={"packed_from": sources},
            config_overrides=overrides, model_card=args.model_card,
        )
    except (ValueError, OSError) as exc:
        sys.exit(f"pack_model: {exc}")
    print(archive)


if __name__ == "__main__":
    main()
