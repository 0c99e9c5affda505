"""A trained SLM-SS model and its codec as a separator: what stage 4, SeparatorModel and
LongAudioSeparator call like any other (`SeparateFn`: (1, N) mixture -> two (1, N) waveforms).

SLM-SS generates codec tokens, not waveforms: each speaker's tokens are decoded by the codec the
model was trained on (its config's `codec`), resampled from the codec's rate to the model's and
cut or zero-padded to the input's length, so both speakers always have the input's length. A
call whose AR reached the length cap (no `<sc>` or `<eos>` of its own) is logged by the model
and its status kept in `statuses`, so stage 4 writes it per mixture (`decode_status`) and
nothing is dropped silently.
"""
from __future__ import annotations

import logging
from typing import List, Optional

import numpy as np
import soxr
import torch

from sepalm_espnet.slm_ss.model import SlmSsDecodeOptions, SlmSsModel
from sepalm_espnet.synthesizer.codec import load_codec
from sepalm_espnet.tasks.loading import ConfigSource, build_trained_model
from sepalm_espnet.tasks.slm_ss import SlmSsTask

logger = logging.getLogger(__name__)
STATUS_FILE = "decode_status"  # stage 4's table: mixture key -> the status of each separator call


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad a 1-D waveform to `length` samples."""
    return np.pad(wave, (0, max(0, length - len(wave))))[:length]


class SlmSsSeparation:
    """Generative separation of one mixture at a time (options: SlmSsDecodeOptions)."""

    def __init__(self, model: SlmSsModel, codec, options: SlmSsDecodeOptions = SlmSsDecodeOptions()):
        if codec.codebook_size != model.codebook_size:
            raise ValueError(f"the codec has {codec.codebook_size} entries per codebook, "
                             f"the model generates {model.codebook_size}")
        if codec.n_codebooks < model.num_codebooks:
            raise ValueError(f"the codec gives {codec.n_codebooks} codebooks, the model generates {model.num_codebooks}")
        self.model = model.eval()
        self.codec = codec
        self.options = options
        self.num_spk = model.num_spk
        self.fs = int(model.sample_rate)
        self.statuses: List[str] = []
        self.device = next(model.parameters()).device

    @classmethod
    def from_files(
        cls,
        config: ConfigSource,
        model_file,
        device: str = "cpu",
        options: SlmSsDecodeOptions = SlmSsDecodeOptions(),
    ) -> "SlmSsSeparation":
        """config: the training config (dict or file; None: config.yaml beside model_file)."""
        model, args = build_trained_model(SlmSsTask, config, model_file, device)
        if not getattr(args, "codec", None):
            raise ValueError(f"{model_file}: its training config names no codec (--codec); "
                             "SLM-SS cannot turn its tokens into speech without it")
        codec = load_codec(args.codec, n_codebooks=model.num_codebooks, device=device)
        return cls(model, codec, options)

    def decode_speaker(self, tokens: torch.Tensor, length: int) -> np.ndarray:
        """(T', Q) tokens -> `length` samples at the model's rate (silence for T' = 0)."""
        if tokens.size(0) == 0:
            return np.zeros(length, dtype=np.float32)
        frames = tokens.size(0)
        wave = self.codec.decode(tokens.T[None].to(torch.long), frames * self.codec.hop_length)[0]
        wave = wave.detach().to("cpu", torch.float32).numpy()
        if self.codec.sample_rate != self.fs:
            wave = soxr.resample(wave, self.codec.sample_rate, self.fs)
        return fit_length(wave, length).astype(np.float32)

    @torch.no_grad()
    def __call__(self, mixture: torch.Tensor, options: Optional[SlmSsDecodeOptions] = None) -> List[torch.Tensor]:
        """(1, N) mixture at the model's rate -> [(1, N)] * 2."""
        if mixture.ndim != 2 or mixture.size(0) != 1:
            raise ValueError(f"expected one (1, N) mixture, got {tuple(mixture.shape)}")
        length = mixture.size(1)
        codec_samples = -(-length * self.codec.sample_rate // self.fs)
        frames = self.codec.num_frames(codec_samples)
        lengths = torch.tensor([length], device=self.device)
        (output,) = self.model.generate(mixture.to(self.device, torch.float32), lengths, [frames],
                                        options or self.options)
        self.statuses.append(output.status)
        if len(output.tokens) != self.num_spk:
            raise RuntimeError(f"SLM-SS gave {len(output.tokens)} speakers, expected {self.num_spk}")
        return [torch.from_numpy(self.decode_speaker(tokens, length))[None] for tokens in output.tokens]
