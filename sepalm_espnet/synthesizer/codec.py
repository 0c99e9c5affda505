"""DAC (descript-audio-codec) as a batched tokenizer/detokenizer with exact length handling.

The synthesizer (paper §3.4) models DAC acoustic tokens: `encode` turns (B, T) waveforms into
(B, Q, ceil(T / hop)) codebook indices and `decode` turns them back into exactly T samples.
DAC itself needs inputs padded to a multiple of its hop and returns a few samples fewer than
it was given (15992 for 16000 at hop 320); codec_base.TokenCodec hides both.

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
from typing import Any, Dict, Optional

import dac
import torch

from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path
from sepalm_espnet.synthesizer.codec_base import CodecError, TokenCodec
from sepalm_espnet.synthesizer.encodec import EncodecCodec, is_encodec_source

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


class DacCodec(TokenCodec):
    """A frozen DAC in eval mode; tokens are (B, Q, T') int64 codebook indices.

    Batch-encoded waveforms zero-padded to the longest can differ from encoding them alone in
    their last frames: the encoder sees padding activations there.
    """

    codec_name = "DAC"

    def __init__(self, model: dac.DAC, n_codebooks: Optional[int] = None, device: str = "cpu"):
        total = model.n_codebooks
        if n_codebooks is not None and not 1 <= n_codebooks <= total:
            raise CodecError(f"n_codebooks must be in [1, {total}], not {n_codebooks}")
        super().__init__(model, total if n_codebooks is None else n_codebooks, device)

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
    def codebook_size(self) -> int:
        return int(self.model.codebook_size)

    @property
    def total_codebooks(self) -> int:
        """Codebooks the model has (decode accepts any first q of them)."""
        return int(self.model.n_codebooks)

    def _encode_codes(self, audio: torch.Tensor) -> torch.Tensor:
        # Eval mode stops at n_quantizers; a model left in train mode would return all its codebooks.
        _, codes, *_ = self.model.encode(audio, n_quantizers=self.n_codebooks)
        return codes[:, : self.n_codebooks]

    def _decode_audio(self, tokens: torch.Tensor) -> torch.Tensor:
        """A few trailing samples short (DAC's transposed convolutions lose them; decode pads
        them with silence); already in [-1, 1], as DAC's decoder ends in tanh."""
        latent, _, _ = self.model.quantizer.from_codes(tokens)
        return self.model.decode(latent).squeeze(1)


def load_codec(source: PathLike, n_codebooks: Optional[int] = None, device: str = "cpu"):
    """The codec slot's one registry: an EncodecCodec for a transformers EnCodec directory
    (config.json with model_type "encodec") or a "facebook/encodec*" hub id, else a DacCodec
    (release tag or DAC weights file). Both are TokenCodecs; both raise CodecError."""
    if is_encodec_source(source):
        return EncodecCodec.from_pretrained(source, n_codebooks=n_codebooks, device=device)
    if Path(source).is_dir():
        raise CodecError(f"{source}: a directory, but not a transformers EnCodec (no config.json with model_type "
                         f"'encodec'); DAC checkpoints are weights files")
    return DacCodec.from_pretrained(source, n_codebooks=n_codebooks, device=device)
