"""DAC (descript-audio-codec) as a batched tokenizer/detokenizer with exact length handling.

The synthesizer (paper §3.4) models DAC acoustic tokens: `encode` turns (B, T) waveforms into
(B, Q, ceil(T / hop)) codebook indices and `decode` turns them back into exactly T samples.
DAC itself needs inputs padded to a multiple of its hop and returns a few samples fewer than
it was given (15992 for 16000 at hop 320); this wrapper hides both.

Checkpoints load without unpickling code: a local file must be DAC's weights format
(`{"state_dict", "metadata": {"kwargs"}}`, what `model.save(path, package=False)` and the
released weights hold), read with `torch.load(weights_only=True)`. `model.save(path)`'s
default torch.package archive embeds and executes pickled code on load, so it is refused
with the one-line conversion to run on a file you trust.
"""
from __future__ import annotations

import inspect
import logging
import math
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import dac
import numpy as np
import torch

from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path

logger = logging.getLogger(__name__)

# The released 16 kHz model (paper §4.2: Q = 12 codebooks of B = 1024 entries, 50 frames/s).
DAC_16KHZ_ARCH: Dict[str, Any] = dict(
    encoder_dim=64,
    encoder_rates=[2, 4, 5, 8],
    decoder_dim=1536,
    n_codebooks=12,
    codebook_size=1024,
    codebook_dim=8,
    sample_rate=16000,
)

# Names `dac.utils.download(model_type=...)` accepts; anything else is a local file.
RELEASE_TAGS = ("16khz", "24khz", "44khz")


class CodecError(ValueError):
    """A codec checkpoint or codec input is unusable; the message says why."""


def build_dac(**arch: Any) -> dac.DAC:
    """A randomly initialised DAC: the released 16 kHz architecture, overridden by `arch`.

    The decoder mirrors the encoder strides unless `decoder_rates` is given (DAC's own
    default decoder rates belong to the 44 kHz model and would not invert [2, 4, 5, 8]).
    """
    config = {**DAC_16KHZ_ARCH, **arch}
    config.setdefault("decoder_rates", list(reversed(config["encoder_rates"])))
    if math.prod(config["decoder_rates"]) != math.prod(config["encoder_rates"]):
        raise CodecError(
            f"decoder_rates {config['decoder_rates']} do not undo encoder_rates {config['encoder_rates']}"
        )
    return dac.DAC(**config)


def save_dac(model: dac.DAC, path: PathLike) -> None:
    """Save in DAC's weights format (loadable with weights_only=True), atomically."""
    with atomic_path(path, suffix=".pth") as tmp:
        model.save(str(tmp), package=False)


def is_torch_package(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/.data/extern_modules") for name in archive.namelist())


def load_dac(path: PathLike) -> dac.DAC:
    """Load a DAC weights file without executing pickled code; every weight must be present."""
    path = Path(path)
    if is_torch_package(path):
        raise CodecError(
            f"{path}: a torch.package archive (DAC's default `model.save(path)`), which runs "
            f"pickled code when loaded. If you trust the file, convert it once with: python -c "
            f"\"import dac; dac.DAC.load('{path}').save('weights.pth', package=False)\""
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        raise CodecError(f"{path}: not a loadable DAC weights file ({exc})") from exc
    try:
        state_dict, kwargs = checkpoint["state_dict"], checkpoint["metadata"]["kwargs"]
    except (TypeError, KeyError):
        raise CodecError(f"{path}: expected DAC's {{'state_dict', 'metadata': {{'kwargs'}}}} layout") from None
    unknown = sorted(set(kwargs) - set(inspect.signature(dac.DAC).parameters))
    if unknown:
        logger.warning("%s: ignoring constructor arguments this dac version lacks: %s", path, unknown)
    model = dac.DAC(**{k: v for k, v in kwargs.items() if k not in unknown})
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # tensor shapes disagree with the architecture in the metadata
        raise CodecError(f"{path}: weights do not fit the architecture {kwargs} ({exc})") from exc
    if result.missing_keys:
        raise CodecError(f"{path}: weights missing for {len(result.missing_keys)} tensors, e.g. {result.missing_keys[:3]}")
    if result.unexpected_keys:
        logger.warning("%s: ignoring %d unexpected tensors, e.g. %s", path, len(result.unexpected_keys), result.unexpected_keys[:3])
    return model


class DacCodec:
    """A frozen DAC in eval mode; tokens are (B, Q, T') int64 codebook indices."""

    def __init__(self, model: dac.DAC, n_codebooks: Optional[int] = None, device: str = "cpu"):
        total = model.n_codebooks
        if n_codebooks is not None and not 1 <= n_codebooks <= total:
            raise CodecError(f"n_codebooks must be in [1, {total}], not {n_codebooks}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._n_codebooks = total if n_codebooks is None else n_codebooks

    @classmethod
    def from_pretrained(cls, source: PathLike, n_codebooks: Optional[int] = None, device: str = "cpu") -> "DacCodec":
        """`source`: a release tag ("16khz"; downloaded by dac into ~/.cache) or a weights file."""
        if str(source) in RELEASE_TAGS:
            path = dac.utils.download(model_type=str(source))
        else:
            path = Path(source)
            if not path.is_file():
                raise CodecError(f"{source}: neither a DAC release tag {RELEASE_TAGS} nor a file")
        return cls(load_dac(path), n_codebooks=n_codebooks, device=device)

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def hop_length(self) -> int:
        return int(self.model.hop_length)

    @property
    def n_codebooks(self) -> int:
        return self._n_codebooks

    @property
    def codebook_size(self) -> int:
        return int(self.model.codebook_size)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Tokens per codebook for `num_samples` input samples: ceil(num_samples / hop)."""
        return -(-num_samples // self.hop_length)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, T) float waveform at `sample_rate` -> (B, n_codebooks, ceil(T / hop)) int64."""
        if wav.ndim != 2 or not wav.is_floating_point():
            raise CodecError(f"encode expects a (B, T) float tensor, got {tuple(wav.shape)} {wav.dtype}")
        num_samples = wav.shape[-1]
        if num_samples == 0:
            raise CodecError("encode: the input has 0 samples")
        frames = self.num_frames(num_samples)
        padded = torch.nn.functional.pad(wav, (0, frames * self.hop_length - num_samples))
        audio = padded.to(self.device, torch.float32).unsqueeze(1)
        _, codes, *_ = self.model.encode(audio, n_quantizers=self.n_codebooks)
        if codes.shape[-1] != frames:
            raise CodecError(f"DAC produced {codes.shape[-1]} frames for {frames} hops; unsupported architecture")
        return codes[:, : self.n_codebooks]

    def encode_batch(self, waves: Sequence[np.ndarray]) -> List[torch.Tensor]:
        """Encode 1-D waveforms of different lengths together: (n_codebooks, ceil(len / hop)) each.

        The shorter ones are zero-padded to the longest; their last frames can then differ
        slightly from encoding them alone (the encoder sees padding activations there), so
        batch similar lengths together.
        """
        lengths = [len(wave) for wave in waves]
        batch = torch.zeros(len(waves), max(lengths))
        for row, wave in zip(batch, waves):
            row[: len(wave)] = torch.as_tensor(wave)
        codes = self.encode(batch).cpu()
        return [item[:, : self.num_frames(length)] for item, length in zip(codes, lengths)]

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        """(B, q, T') tokens, q <= the model's codebooks -> (B, length) float in [-1, 1].

        `length` defaults to T' * hop; an input length given back restores it exactly.
        """
        if tokens.ndim != 3 or tokens.is_floating_point():
            raise CodecError(f"decode expects (B, Q, T') integer tokens, got {tuple(tokens.shape)} {tokens.dtype}")
        if not 1 <= tokens.shape[1] <= self.model.n_codebooks:
            raise CodecError(f"decode: {tokens.shape[1]} codebooks given, the model has {self.model.n_codebooks}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise CodecError(f"decode: token values must be in [0, {self.codebook_size})")
        frames = tokens.shape[-1]
        length = frames * self.hop_length if length is None else length
        if frames == 0 or self.num_frames(length) != frames:
            raise CodecError(f"decode: {frames} frames cannot hold {length} samples (hop {self.hop_length})")
        latent, _, _ = self.model.quantizer.from_codes(tokens.to(self.device, torch.long))
        audio = self.model.decode(latent).squeeze(1)
        shortfall = length - audio.shape[-1]
        # DAC's transposed convolutions lose a few trailing samples: pad those with silence.
        return torch.nn.functional.pad(audio, (0, shortfall)) if shortfall > 0 else audio[:, :length]


def load_codec(source: PathLike, n_codebooks: Optional[int] = None, device: str = "cpu"):
    """The codec slot's one registry: an EncodecCodec for a transformers EnCodec directory
    (config.json with model_type "encodec") or a "facebook/encodec*" hub id, else a DacCodec
    (release tag or DAC weights file). Both have the same interface; EnCodec's errors are
    encodec.EncodecError, like CodecError a ValueError."""
    from sepalm_espnet.synthesizer.encodec import EncodecCodec, is_encodec_source

    if is_encodec_source(source):
        return EncodecCodec.from_pretrained(source, n_codebooks=n_codebooks, device=device)
    if Path(source).is_dir():
        raise CodecError(f"{source}: a directory, but not a transformers EnCodec (no config.json with model_type "
                         f"'encodec'); DAC checkpoints are weights files")
    return DacCodec.from_pretrained(source, n_codebooks=n_codebooks, device=device)
