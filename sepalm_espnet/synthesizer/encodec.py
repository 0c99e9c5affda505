"""EnCodec (transformers' EncodecModel) as a TokenCodec like DacCodec: SLM-SS's codec (paper: the
facebook/encodec_24khz layout, 32 codebooks of 1024 entries at 75 frames/s, the first 8 modelled).

`n_codebooks` picks the bandwidth: EnCodec encodes with as many codebooks as the bandwidth pays
for, n = bandwidth * 1000 / (frame_rate * log2(codebook_size)) (24 kHz: 0.75 kbps a codebook, so
1.5 kbps = 2 ... 6 kbps = 8 ... 24 kbps = 32), and only the model's `target_bandwidths` are
allowed. Its residual quantizer is greedy, so the first codebooks at any bandwidth are the
codes of the lower bandwidths.

Rates: the codec runs at its own `sample_rate` (24 kHz) like DacCodec; the callers resample to
`codec.sample_rate` themselves (token_io.tokenize_wav_scp through load_mono, the pipeline with
soxr) and write what `decode` returns at that rate, so no resampling happens here.

Only models that code a waveform by its tokens alone are accepted: mono, one chunk
(`chunk_length_s` None) and no `normalize` (the 48 kHz model's per-chunk scales would have to be
stored beside the tokens).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Dict, Optional, Type

import torch

from sepalm_espnet.data.kaldi_dir import PathLike
from sepalm_espnet.synthesizer.codec_base import CodecError, TokenCodec

logger = logging.getLogger(__name__)

# "name" or "namespace/name", as the hub spells repository ids; anything else is a local path.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
ENCODEC_MODEL_TYPE = "encodec"


def load_transformers_model(model_class: type, source: PathLike, error: Type[Exception] = ValueError):
    """A transformers model of `model_class`'s type in eval mode, every weight from the checkpoint.

    `source`: a `save_pretrained` directory, or a hub id (read from the local cache only when
    HF_HUB_OFFLINE is set; a directory never goes to the hub). Weights come from
    model.safetensors when present; a pytorch_model.bin alone is read by transformers with
    torch.load(weights_only=True) (refused on torch < 2.6), so a pickle that would run code is
    refused, not run. A config of another model type, or weights missing for any tensor (which
    transformers would initialise randomly with a warning), is refused too.
    """
    from huggingface_hub import constants
    from transformers import PreTrainedConfig

    name = str(source)
    is_dir = Path(name).is_dir()
    if not is_dir and not HUB_ID.fullmatch(name):
        raise error(f"{source}: no such model directory")
    if is_dir and not (Path(name) / "config.json").is_file():
        raise error(f"{source}: no transformers model there (no config.json: not a save_pretrained directory)")
    local_only = is_dir or constants.is_offline_mode()
    try:
        config, _ = PreTrainedConfig.get_config_dict(name, local_files_only=local_only)
    except OSError as exc:
        if is_dir:
            raise error(f"{source}: unreadable config.json ({exc})") from exc
        where = "the local hub cache (offline: HF_HUB_OFFLINE)" if local_only else "the hub"
        raise error(f"{source}: no such directory, and no transformers model of that id in {where} ({exc})") from exc
    expected = model_class.config_class.model_type
    if config.get("model_type") != expected:
        raise error(f"{source}: config.json is a {config.get('model_type')!r} model, expected {expected!r}")
    try:
        model, info = model_class.from_pretrained(name, local_files_only=local_only, weights_only=True,
                                                  dtype=torch.float32, output_loading_info=True)
    except Exception as exc:  # an unsafe pickle, no weights file, shapes that disagree, ...
        raise error(f"{source}: weights not loadable as {model_class.__name__} ({type(exc).__name__}: {exc})") from exc
    if info["missing_keys"] or info["mismatched_keys"]:
        bad = sorted(info["missing_keys"]) + [str(key) for key in info["mismatched_keys"]]
        raise error(f"{source}: weights missing or of the wrong shape for {len(bad)} tensors, e.g. {bad[:3]}")
    if info["unexpected_keys"]:
        logger.warning("%s: ignoring %d unexpected tensors, e.g. %s", source, len(info["unexpected_keys"]),
                       sorted(info["unexpected_keys"])[:3])
    return model.eval()


def is_encodec_source(source: PathLike) -> bool:
    """A directory whose config.json is an EnCodec's, or a facebook/encodec* hub id."""
    config_file = Path(source) / "config.json"
    if Path(source).is_dir():
        try:
            return json.loads(config_file.read_text(encoding="utf-8")).get("model_type") == ENCODEC_MODEL_TYPE
        except (OSError, ValueError, AttributeError):  # no config.json, not JSON, not a JSON object
            return False
    return str(source).startswith("facebook/encodec")


class EncodecCodec(TokenCodec):
    """A frozen EnCodec in eval mode; tokens are (B, Q, T') int64 codebook indices, as DacCodec's.

    Batch-encoded waveforms zero-padded to the longest can differ from encoding them alone in
    their last frames: EnCodec's LSTM and convolutions see that padding.
    """

    codec_name = "EnCodec"

    def __init__(self, model, n_codebooks: Optional[int] = None, device: str = "cpu"):
        """model: a transformers EncodecModel; n_codebooks: one of `bandwidths` (default: the most)."""
        config = model.config
        required = {
            "audio_channels": (config.audio_channels, 1),
            "chunk_length_s": (config.chunk_length_s, None),
            "normalize": (config.normalize, False),
        }
        for option, (value, needed) in required.items():
            if value != needed:
                raise CodecError(f"EnCodec with {option}={value} is unsupported (needs {needed}): its tokens "
                                 f"alone do not give the waveform back (facebook/encodec_24khz has {option}={needed})")
        self.bandwidths: Dict[int, float] = {
            model.quantizer.get_num_quantizers_for_bandwidth(bandwidth): bandwidth
            for bandwidth in config.target_bandwidths
        }
        n_codebooks = max(self.bandwidths) if n_codebooks is None else n_codebooks
        if n_codebooks not in self.bandwidths:
            allowed = ", ".join(f"{n} ({kbps} kbps)" for n, kbps in sorted(self.bandwidths.items()))
            raise CodecError(f"n_codebooks {n_codebooks} matches no bandwidth of this EnCodec; choose from {allowed}")
        super().__init__(model, n_codebooks, device)
        self.bandwidth = self.bandwidths[n_codebooks]

    @classmethod
    def from_pretrained(cls, source: PathLike, n_codebooks: Optional[int] = None,
                        device: str = "cpu") -> "EncodecCodec":
        """`source`: an EncodecModel directory (save_pretrained) or hub id ("facebook/encodec_24khz")."""
        from transformers import EncodecModel

        model = load_transformers_model(EncodecModel, source, CodecError)
        return cls(model, n_codebooks=n_codebooks, device=device)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        return int(self.model.config.hop_length)

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.codebook_size)

    @property
    def total_codebooks(self) -> int:
        """Codebooks the model has (decode accepts any first q of them)."""
        return int(self.model.quantizer.num_quantizers)

    def _encode_codes(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.encode(audio, bandwidth=self.bandwidth, return_dict=True).audio_codes[0]

    def _decode_audio(self, tokens: torch.Tensor) -> torch.Tensor:
        """Clipped to [-1, 1]: EnCodec's decoder has no output squashing (DAC's ends in tanh),
        and decode promises that range, the one 16-bit files hold."""
        codes = tokens[None]  # one chunk: (chunks=1, B, q, T')
        audio = self.model.decode(codes, [None], return_dict=True).audio_values.squeeze(1)
        return audio.clamp(-1.0, 1.0)
