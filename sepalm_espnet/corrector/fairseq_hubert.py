"""SpeechGPT's unit extractor, mHuBERT (`mhubert_base_vp_en_es_fr_it3.pt`), as a transformers dir.

SpeechGPT-7B-cm understands only the units of that fairseq checkpoint's layer 11 and its
1000-cluster k-means; no transformers copy of it is published, and fairseq does not install on
Python 3.11. `convert_fairseq_hubert` rewrites the checkpoint once into a `HubertModel` dir
(safetensors weights, `preprocessor_config.json` with the checkpoint's waveform normalisation),
which `units.HubertFeatureExtractor` reads like any other. A fairseq checkpoint is a pickle
(its config is an omegaconf object): this conversion, run on a user's explicit command, is the
one place besides `units.import_sklearn_kmeans` where the toolkit unpickles anything.
"""
from __future__ import annotations

import ast
import logging
import operator
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import torch

from sepalm_espnet.data.kaldi_dir import PathLike

logger = logging.getLogger(__name__)

# fairseq HubertModel parameter name -> transformers HubertModel's (None: training-only, dropped).
_KEY_MAP: Tuple[Tuple[str, Any], ...] = (
    (r"mask_emb", "masked_spec_embed"),
    (r"(label_embs_concat|final_proj\..*)", None),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(k|v|q|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
)
# fairseq's model config field -> HubertConfig's (fairseq's extractor_mode and conv layer spec
# are translated separately).
_CONFIG_MAP = {
    "encoder_embed_dim": "hidden_size", "encoder_layers": "num_hidden_layers",
    "encoder_attention_heads": "num_attention_heads", "encoder_ffn_embed_dim": "intermediate_size",
    "activation_fn": "hidden_act", "conv_pos": "num_conv_pos_embeddings",
    "conv_pos_groups": "num_conv_pos_embedding_groups", "layer_norm_first": "do_stable_layer_norm",
    "conv_bias": "conv_bias",
}
_EXTRACTOR_NORMS = {"default": "group", "layer_norm": "layer"}
_SPEC_OPERATORS = {ast.Add: operator.add, ast.Mult: operator.mul}


def parse_conv_layers(spec: str) -> List[Tuple[int, int, int]]:
    """fairseq's `conv_feature_layers` ("[(512,10,5)] + [(512,3,2)] * 4 + ...") without eval."""
    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.BinOp) and type(node.op) in _SPEC_OPERATORS:
            return _SPEC_OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value(item) for item in node.elts]
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"conv_feature_layers {spec!r}: only lists of (dim, kernel, stride) with + and *")

    layers = value(ast.parse(spec, mode="eval").body)
    if not layers or any(len(layer) != 3 for layer in layers):
        raise ValueError(f"conv_feature_layers {spec!r}: expected a list of (dim, kernel, stride)")
    return [tuple(layer) for layer in layers]


def hubert_config_from_fairseq(model_cfg: Mapping[str, Any]):
    from transformers import HubertConfig

    missing = [name for name in (*_CONFIG_MAP, "extractor_mode", "conv_feature_layers") if name not in model_cfg]
    if missing:
        raise ValueError(f"the checkpoint's model config lacks {missing}: not a fairseq HuBERT checkpoint")
    if model_cfg["extractor_mode"] not in _EXTRACTOR_NORMS:
        raise ValueError(f"extractor_mode {model_cfg['extractor_mode']!r}: expected one of {list(_EXTRACTOR_NORMS)}")
    dims, kernels, strides = zip(*parse_conv_layers(model_cfg["conv_feature_layers"]))
    return HubertConfig(
        **{ours: model_cfg[theirs] for theirs, ours in _CONFIG_MAP.items()},
        feat_extract_norm=_EXTRACTOR_NORMS[model_cfg["extractor_mode"]], feat_proj_layer_norm=True,
        conv_dim=dims, conv_kernel=kernels, conv_stride=strides)


def hubert_state_dict_from_fairseq(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    converted, dropped = {}, []
    for key, tensor in state_dict.items():
        for pattern, replacement in _KEY_MAP:
            if re.fullmatch(pattern, key):
                if replacement is None:
                    dropped.append(key)
                else:
                    converted[re.sub(pattern, replacement, key)] = tensor
                break
        else:
            raise ValueError(f"parameter {key!r}: not a fairseq HuBERT parameter this converter knows")
    logger.info("dropped %d training-only parameters: %s", len(dropped), dropped)
    return converted


def _config_section(checkpoint: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    """hydra-era checkpoints keep `cfg[section]`; older ones one argparse Namespace, `args`."""
    if checkpoint.get("cfg") is not None:
        return checkpoint["cfg"][section] or {}
    if checkpoint.get("args") is not None:
        return vars(checkpoint["args"])
    raise ValueError("neither 'cfg' nor 'args' in the checkpoint: not a fairseq checkpoint")


def convert_fairseq_hubert(checkpoint_path: PathLike, output_dir: PathLike) -> Path:
    """Write `output_dir` (refused if it exists; complete or absent, never half-written)."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    output_dir = Path(output_dir)
    if output_dir.exists():
        raise ValueError(f"{output_dir}: exists; give a new --output_dir")
    logger.warning("%s: unpickling a fairseq checkpoint (convert only files you trust)", checkpoint_path)
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        raise ValueError(f"{checkpoint_path}: no 'model' state dict: not a fairseq checkpoint")
    try:
        config = hubert_config_from_fairseq(_config_section(checkpoint, "model"))
        state_dict = hubert_state_dict_from_fairseq(checkpoint["model"])
    except ValueError as exc:
        raise ValueError(f"{checkpoint_path}: {exc}") from exc
    model = HubertModel(config)
    model.load_state_dict(state_dict, strict=True)  # every parameter given, none left at random
    normalize = bool(_config_section(checkpoint, "task").get("normalize", False))
    partial = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.eval().save_pretrained(partial, safe_serialization=True)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=normalize).save_pretrained(partial)
    partial.rename(output_dir)
    logger.info("%s: %d layers of width %d, waveform normalisation %s", output_dir, config.num_hidden_layers,
                config.hidden_size, normalize)
    return output_dir
