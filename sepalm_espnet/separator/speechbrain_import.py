"""SpeechBrain's published SepFormer checkpoints as one of our separator experiments.

A SpeechBrain model dir (e.g. speechbrain/sepformer-whamr16k) holds hyperparams.yaml and the
plain state dicts encoder.ckpt, masknet.ckpt and decoder.ckpt. hyperparams.yaml is HyperPyYAML:
loading it the intended way constructs every `!new:` object and can call any function. Here it
is read with a safe YAML loader that keeps each tag as data; the numbers are taken from the four
classes a SepFormer is built from, and anything else those classes are given is refused. The
weights map key by key onto our SepFormer (separator/sepformer.py, the same computation), every
key used, every shape checked, and the result is an ESPnet enh experiment dir (config.yaml + one
checkpoint) that stage 4, SeparatorModel.from_pretrained and packing read like a trained one.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import yaml
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from sepalm_espnet.data.kaldi_dir import PathLike
from sepalm_espnet.separator.registry import DEFAULT_CHECKPOINT, EnhancementTask
from sepalm_espnet.separator.sepformer import sinusoidal_positions
from sepalm_espnet.tasks.loading import read_state_dict
from sepalm_espnet.zoo import sha256_file

HPARAMS = "hyperparams.yaml"
CHECKPOINTS = {"encoder": "encoder.ckpt", "masknet": "masknet.ckpt", "decoder": "decoder.ckpt"}
PROVENANCE = "speechbrain_import.yaml"
DUAL_PATH = "speechbrain.lobes.models.dual_path."
REQUIRED = object()
# SpeechBrain 1.x constructor defaults (test/separator/test_speechbrain_import.py compares them
# with SpeechBrain's signatures): an option absent from hyperparams.yaml takes these values.
SPEECHBRAIN_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "Encoder": {"kernel_size": 2, "out_channels": 64, "in_channels": 1},
    "SBTransformerBlock": {
        "num_layers": REQUIRED, "d_model": REQUIRED, "nhead": REQUIRED, "d_ffn": 2048,
        "input_shape": None, "kdim": None, "vdim": None, "dropout": 0.1, "activation": "relu",
        "use_positional_encoding": False, "norm_before": False, "attention_type": "regularMHA",
    },
    "Dual_Path_Model": {
        "in_channels": REQUIRED, "out_channels": REQUIRED, "intra_model": REQUIRED,
        "inter_model": REQUIRED, "num_layers": 1, "norm": "ln", "K": 200, "num_spks": 2,
        "skip_around_intra": True, "linear_layer_after_inter_intra": True,
        "use_global_pos_enc": False, "max_length": 20000,
    },
    # Decoder is torch.nn.ConvTranspose1d.
    "Decoder": {
        "in_channels": REQUIRED, "out_channels": REQUIRED, "kernel_size": REQUIRED, "stride": 1,
        "padding": 0, "output_padding": 0, "groups": 1, "bias": True, "dilation": 1,
        "padding_mode": "zeros",
    },
}
# Values our SepFormer computes (anything else is another model).
SUPPORTED = {
    "Encoder": {"in_channels": 1},
    "SBTransformerBlock": {
        "input_shape": None, "kdim": None, "vdim": None, "use_positional_encoding": True,
        "norm_before": True, "attention_type": "regularMHA",
    },
    "Dual_Path_Model": {
        "norm": "ln", "skip_around_intra": True, "linear_layer_after_inter_intra": False,
        "use_global_pos_enc": False,
    },
    "Decoder": {"out_channels": 1, "padding": 0, "output_padding": 0, "groups": 1, "bias": False,
                "dilation": 1, "padding_mode": "zeros"},
}
ACTIVATIONS = ("relu", "gelu")
# SpeechBrain key (per checkpoint file) -> ours in ESPnet's enh model.
_LAYER = r"dual_mdl\.(\d+)\.(intra|inter)_mdl\.mdl\.layers\.(\d+)\."
_OURS = r"separator.blocks.\1.\2.layers.layers.\3."
KEY_RULES: Dict[str, List[Tuple[str, str]]] = {
    "encoder": [(r"conv1d\.weight", "encoder.conv1d.weight")],
    "decoder": [(r"weight", "decoder.convtrans1d.weight")],
    "masknet": [
        (r"norm\.(weight|bias)", r"separator.input_norm.\1"),
        (r"conv1d\.weight", "separator.input_projection.weight"),
        (_LAYER + r"self_att\.att\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
         _OURS + r"self_attn.\4"),
        (_LAYER + r"pos_ffn\.ffn\.0\.(weight|bias)", _OURS + r"linear1.\4"),
        (_LAYER + r"pos_ffn\.ffn\.3\.(weight|bias)", _OURS + r"linear2.\4"),
        (_LAYER + r"norm([12])\.norm\.(weight|bias)", _OURS + r"norm\4.\5"),
        (r"dual_mdl\.(\d+)\.(intra|inter)_mdl\.mdl\.norm\.norm\.(weight|bias)", r"separator.blocks.\1.\2.layers.norm.\3"),
        (r"dual_mdl\.(\d+)\.(intra|inter)_norm\.(weight|bias)", r"separator.blocks.\1.\2_norm.\3"),
        (r"prelu\.weight", "separator.speaker_split.0.weight"),
        (r"conv2d\.(weight|bias)", r"separator.speaker_split.1.\1"),
        (r"output\.0\.(weight|bias)", r"separator.output.0.\1"),
        (r"output_gate\.0\.(weight|bias)", r"separator.output_gate.0.\1"),
        (r"end_conv1x1\.weight", "separator.mask_projection.weight"),
    ],
}
# Fixed sinusoid tables SpeechBrain stores as buffers; ours computes them: checked, not copied.
POSITION_TABLE = re.compile(r"dual_mdl\.\d+\.(intra|inter)_mdl\.pos_enc\.pe")
# The training setup of an imported experiment: our SepFormer configs' (fine-tuning through
# stage 3 with --sep_init uses the recipe's own config).
CRITERIONS = [{
    "name": "si_snr", "conf": {"clamp_db": 70.0}, "wrapper": "pit",
    "wrapper_conf": {"weight": 1.0, "independent_perm": True},
}]


class SpeechBrainImportError(ValueError):
    """A SpeechBrain model that is not the SepFormer we compute, or files that do not match it."""


@dataclass(frozen=True)
class Tagged:
    """A HyperPyYAML tag kept as data: `!new:cls` with its mapping, `!ref` with its string."""

    tag: str
    value: Any
    line: int


class _TagsAsData(yaml.SafeLoader):
    """SafeLoader that constructs nothing for tags: every `!...` node becomes a Tagged."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return Tagged("!" + suffix, value, node.start_mark.line + 1)


_TagsAsData.add_multi_constructor("!", _tagged)


def read_hparams(path: PathLike) -> Dict[str, Any]:
    """hyperparams.yaml as data: nothing is constructed, imported or called."""
    with open(path, encoding="utf-8") as f:
        loaded = yaml.load(f, Loader=_TagsAsData)  # a SafeLoader: constructs plain data only
    if not isinstance(loaded, dict):
        raise SpeechBrainImportError(f"{path}: not a YAML mapping")
    return loaded


@dataclass(frozen=True)
class SepFormerHparams:
    """What our enh experiment needs of a SpeechBrain SepFormer."""

    sample_rate: Optional[int]
    channels: int
    kernel_size: int
    separator_conf: Dict[str, Any]

    def enh_config(self) -> Dict[str, Any]:
        filterbank = {"channel": self.channels, "kernel_size": self.kernel_size, "stride": self.kernel_size // 2}
        return {
            "encoder": "conv", "encoder_conf": dict(filterbank),
            "decoder": "conv", "decoder_conf": dict(filterbank),
            "separator": "sepformer", "separator_conf": dict(self.separator_conf),
            "criterions": CRITERIONS,
        }


class _Resolver:
    """Follows `!ref <name>` inside one hyperparams.yaml and checks `!new:` objects."""

    def __init__(self, hparams: Mapping[str, Any], path: Path):
        self.hparams = hparams
        self.path = path

    def value(self, value: Any, where: str) -> Any:
        seen = set()
        while isinstance(value, Tagged):
            if value.tag != "!ref":
                return value
            match = re.fullmatch(r"<([A-Za-z_][A-Za-z0-9_]*)>", str(value.value).strip())
            if not match:
                raise SpeechBrainImportError(
                    f"{self.path}:{value.line}: {where}: only plain references `!ref <name>` are read, "
                    f"not {value.value!r}"
                )
            name = match.group(1)
            if name in seen or name not in self.hparams:
                raise SpeechBrainImportError(f"{self.path}:{value.line}: {where}: reference <{name}> is undefined or circular")
            seen.add(name)
            value = self.hparams[name]
        return value

    def new(self, value: Any, class_name: str, where: str) -> Tuple[Dict[str, Any], int]:
        """The options of a `!new:speechbrain...<class_name>` object, SpeechBrain's defaults filled."""
        value = self.value(value, where)
        expected = "!new:" + DUAL_PATH + class_name
        if not isinstance(value, Tagged) or value.tag != expected:
            line = f":{value.line}" if isinstance(value, Tagged) else ""
            found = value.tag if isinstance(value, Tagged) else repr(value)
            raise SpeechBrainImportError(
                f"{self.path}{line}: {where} is {found}, not {expected} (a SpeechBrain SepFormer); refused"
            )
        if not isinstance(value.value, dict):
            raise SpeechBrainImportError(f"{self.path}:{value.line}: {where}: options must be a mapping (keyword arguments)")
        defaults = SPEECHBRAIN_DEFAULTS[class_name]
        unknown = sorted(set(value.value) - set(defaults))
        if unknown:
            raise SpeechBrainImportError(f"{self.path}:{value.line}: {class_name} option {unknown[0]!r} is not understood; refused")
        options = {**defaults, **value.value}
        for name, option in options.items():
            if option is REQUIRED:
                raise SpeechBrainImportError(f"{self.path}:{value.line}: {class_name} needs {name!r}")
            if name in ("intra_model", "inter_model"):
                continue
            option = options[name] = self.value(option, f"{class_name}.{name}")
            if isinstance(option, Tagged):
                raise SpeechBrainImportError(
                    f"{self.path}:{option.line}: {class_name}.{name} is {option.tag}, which is not read (refused)"
                )
        for name, supported in SUPPORTED[class_name].items():
            if options[name] != supported:
                raise SpeechBrainImportError(
                    f"{self.path}:{value.line}: {class_name}.{name} = {options[name]!r}: our SepFormer "
                    f"computes only {supported!r}; refused"
                )
        return options, value.line


def sepformer_hparams(path: PathLike) -> SepFormerHparams:
    """Checks that hyperparams.yaml describes the SepFormer we compute and reads its sizes."""
    path = Path(path)
    hparams = read_hparams(path)
    resolve = _Resolver(hparams, path)
    modules = resolve.value(hparams.get("modules"), "modules")
    if not isinstance(modules, dict) or sorted(modules) != sorted(CHECKPOINTS):
        raise SpeechBrainImportError(f"{path}: `modules` must name exactly {sorted(CHECKPOINTS)}")
    encoder, _ = resolve.new(modules["encoder"], "Encoder", "modules.encoder")
    masknet, line = resolve.new(modules["masknet"], "Dual_Path_Model", "modules.masknet")
    decoder, _ = resolve.new(modules["decoder"], "Decoder", "modules.decoder")
    intra, _ = resolve.new(masknet["intra_model"], "SBTransformerBlock", "Dual_Path_Model.intra_model")
    inter, _ = resolve.new(masknet["inter_model"], "SBTransformerBlock", "Dual_Path_Model.inter_model")

    def require(condition: bool, what: str) -> None:
        if not condition:
            raise SpeechBrainImportError(f"{path}:{line}: {what}; our SepFormer cannot compute this model (refused)")

    sizes = {"Encoder.out_channels": encoder["out_channels"], "Encoder.kernel_size": encoder["kernel_size"],
             "Dual_Path_Model.num_layers": masknet["num_layers"], "Dual_Path_Model.K": masknet["K"],
             "Dual_Path_Model.num_spks": masknet["num_spks"], **{
                 f"SBTransformerBlock.{name}": intra[name] for name in ("num_layers", "d_model", "nhead", "d_ffn")}}
    for name, size in sizes.items():
        require(isinstance(size, int) and not isinstance(size, bool) and size > 0, f"{name} = {size!r} is not a positive integer")
    channels, kernel = encoder["out_channels"], encoder["kernel_size"]
    require(intra == inter, "intra_model and inter_model differ")
    require(intra["activation"] in ACTIVATIONS, f"activation {intra['activation']!r} is not one of {ACTIVATIONS}")
    require(masknet["in_channels"] == channels, "Dual_Path_Model.in_channels differs from Encoder.out_channels")
    require(masknet["out_channels"] == intra["d_model"], "Dual_Path_Model.out_channels differs from d_model")
    require(masknet["K"] % 2 == 0, f"K = {masknet['K']} is odd (chunks overlap by K // 2)")
    require(kernel % 2 == 0, f"Encoder.kernel_size = {kernel} is odd (its stride is kernel_size // 2)")
    require(
        (decoder["in_channels"], decoder["kernel_size"], decoder["stride"]) == (channels, kernel, kernel // 2),
        "the Decoder's channels, kernel or stride differ from the Encoder's",
    )
    sample_rate = resolve.value(hparams.get("sample_rate"), "sample_rate")
    if sample_rate is not None and not isinstance(sample_rate, int):
        raise SpeechBrainImportError(f"{path}: sample_rate = {sample_rate!r} is not an integer")
    return SepFormerHparams(
        sample_rate=sample_rate,
        channels=channels,
        kernel_size=kernel,
        separator_conf={
            "num_spk": masknet["num_spks"], "d_model": intra["d_model"], "nhead": intra["nhead"],
            "dim_feedforward": intra["d_ffn"], "num_layers": intra["num_layers"],
            "num_blocks": masknet["num_layers"], "chunk_size": masknet["K"],
            "dropout": intra["dropout"], "activation": intra["activation"],
        },
    )


def map_state_dicts(
    checkpoints: Mapping[str, Mapping[str, torch.Tensor]], files: Mapping[str, Path]
) -> Dict[str, torch.Tensor]:
    """SpeechBrain's three state dicts as one state dict of our enh model (every key used)."""
    mapped: Dict[str, torch.Tensor] = {}
    for part, state_dict in checkpoints.items():
        for key, tensor in state_dict.items():
            if part == "masknet" and POSITION_TABLE.fullmatch(key):
                expected = sinusoidal_positions(tensor.size(-2), tensor.size(-1), tensor.device, tensor.dtype)
                if tensor.dim() != 3 or not torch.allclose(tensor[0], expected, atol=1e-6):
                    raise SpeechBrainImportError(f"{files[part]}: {key} is not the sinusoid table our SepFormer computes")
                continue
            for pattern, target in KEY_RULES[part]:
                if re.fullmatch(pattern, key):
                    ours = re.sub(f"^{pattern}$", target, key)
                    break
            else:
                raise SpeechBrainImportError(f"{files[part]}: weight {key!r} has no place in our SepFormer; refused")
            if ours in mapped:
                raise SpeechBrainImportError(f"{files[part]}: {key!r} maps onto {ours!r} a second time")
            mapped[ours] = tensor
    return mapped


def check_against_model(mapped: Mapping[str, torch.Tensor], model: torch.nn.Module) -> None:
    """The first missing, unexpected or misshapen weight, named, before anything is loaded."""
    ours = model.state_dict()
    for key, tensor in ours.items():
        if key not in mapped:
            raise SpeechBrainImportError(f"the checkpoints have no weight for {key!r} {tuple(tensor.shape)}")
        if mapped[key].shape != tensor.shape:
            raise SpeechBrainImportError(
                f"{key!r}: the checkpoint's shape {tuple(mapped[key].shape)} is not {tuple(tensor.shape)} "
                "(hyperparams.yaml and the .ckpt files disagree)"
            )
    extra = sorted(set(mapped) - set(ours))
    if extra:
        raise SpeechBrainImportError(f"{extra[0]!r}: a checkpoint weight our model built from hyperparams.yaml lacks")


def fetch(src: str, cache_dir: Optional[PathLike] = None) -> Path:
    """A local SpeechBrain model dir as is, or the four files of a Hugging Face hub model."""
    if Path(src).is_dir():
        return Path(src)
    if Path(src).exists() or src.count("/") != 1:
        raise SpeechBrainImportError(f"--src {src}: neither a model directory nor a hub id (owner/name)")
    import huggingface_hub

    logging.info("fetching %s from the Hugging Face hub", src)
    try:
        paths = [huggingface_hub.hf_hub_download(src, name, cache_dir=cache_dir) for name in [HPARAMS, *CHECKPOINTS.values()]]
    except Exception as exc:  # offline, unknown repo, missing file: all end the import here
        raise SpeechBrainImportError(f"--src {src}: could not fetch it from the Hugging Face hub: {exc}") from exc
    return Path(paths[0]).parent


def _write_all(out: Path, writers: Mapping[str, Callable[[Any], None]]) -> None:
    """Every file written under a hidden name first, then all renamed (config.yaml last): a
    failed import leaves no file a rerun or stage 4 would take for a finished one."""
    temporary = {}
    try:
        for name, write in writers.items():
            handle, temporary[name] = tempfile.mkstemp(dir=out, prefix=f".{name}.")
            with os.fdopen(handle, "w" if name.endswith(".yaml") else "wb") as f:
                write(f)
        for name, tmp in temporary.items():
            os.replace(tmp, out / name)
    finally:
        for tmp in temporary.values():
            Path(tmp).unlink(missing_ok=True)


def import_sepformer(
    src: str,
    out: PathLike,
    model_name: str = DEFAULT_CHECKPOINT,
    fs: Optional[int] = None,
    sample_rate: Optional[int] = None,
    cache_dir: Optional[PathLike] = None,
) -> Path:
    """Writes `out`/config.yaml, `out`/`model_name` and `out`/speechbrain_import.yaml; returns the model file.

    sample_rate: the checkpoint's rate when hyperparams.yaml does not say it. fs: the rate the
    caller works at; a checkpoint of another rate is refused (separating resampled audio at a
    rate it was not trained for would silently lose quality).
    """
    out = Path(out)
    for name in ("config.yaml", model_name, PROVENANCE):
        if (out / name).exists():
            raise SpeechBrainImportError(f"{out / name} exists: import into a new directory")
    root = fetch(src, cache_dir)
    files = {part: root / name for part, name in CHECKPOINTS.items()}
    for path in [root / HPARAMS, *files.values()]:
        if not path.is_file():
            raise SpeechBrainImportError(f"{path}: missing (a SpeechBrain SepFormer has {HPARAMS} and {sorted(CHECKPOINTS.values())})")
    hparams = sepformer_hparams(root / HPARAMS)
    rate = hparams.sample_rate or sample_rate
    if rate is None:
        raise SpeechBrainImportError(f"{root / HPARAMS} has no sample_rate: give the checkpoint's rate (--sample_rate)")
    if sample_rate is not None and sample_rate != rate:
        raise SpeechBrainImportError(f"{root / HPARAMS} says sample_rate {rate}, --sample_rate says {sample_rate}")
    if fs is not None and fs != rate:
        raise SpeechBrainImportError(
            f"{src} separates {rate} Hz audio, the recipe runs at --fs {fs}: use a checkpoint of "
            f"{fs} Hz or run the recipe with --fs {rate}"
        )
    mapped = map_state_dicts({part: read_state_dict(path) for part, path in files.items()}, files)

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config_file:
        yaml.safe_dump(hparams.enh_config(), config_file)
        config_file.flush()
        args = EnhancementTask.get_parser().parse_args(["--config", config_file.name, "--output_dir", str(out)])
    args.sample_rate = rate
    args.init_param = []
    model = EnhancementTask.build_model(argparse.Namespace(**vars(args)))
    check_against_model(mapped, model)
    model.load_state_dict(mapped, strict=True)

    provenance = {
        "source": src, "sample_rate": rate, "weights": len(mapped),
        "files": {path.name: sha256_file(path) for path in [root / HPARAMS, *files.values()]},
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_all(out, {
        model_name: lambda f: torch.save(model.state_dict(), f),
        PROVENANCE: lambda f: yaml_no_alias_safe_dump(provenance, f, indent=4, sort_keys=False),
        "config.yaml": lambda f: yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False),
    })
    logging.info("imported %s (%d Hz, %d weights) into %s", src, rate, len(mapped), out / model_name)
    return out / model_name
