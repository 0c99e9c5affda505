"""Speaker similarity SIM (paper §4.3): cosine of speaker embeddings, output speech vs. reference.

Backends (`build_speaker_encoder`):

- `resemblyzer`: Resemblyzer's GE2E encoder, whose weights ship inside the PyPI wheel (so it
  works offline; `model` is ignored). Its own preprocessing (volume normalisation, VAD
  trimming of long pauses) is applied, as the package intends.
- `wavlm`: transformers `WavLMForXVector` (e.g. microsoft/wavlm-base-plus-sv, the paper's
  choice) from a local directory or a hub id, with the feature extractor saved beside it.

Each utterance is embedded on its own: padding a batch would change WavLM's statistics pooling
for the shorter items.
"""
from __future__ import annotations

import abc
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_key_file, select_entries
from sepalm_espnet.metrics.separation import read_permutation

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class SpeakerEncoder(abc.ABC):
    """16 kHz mono float32 speech -> one L2-normalised speaker embedding."""

    sample_rate = SAMPLE_RATE

    @abc.abstractmethod
    def embed(self, audio: np.ndarray) -> np.ndarray:
        """(T,) -> (D,) unit-norm embedding."""

    def similarity(self, audio_a: np.ndarray, audio_b: np.ndarray) -> float:
        return float(np.dot(self.embed(audio_a), self.embed(audio_b)))


def _unit(embedding: np.ndarray) -> np.ndarray:
    embedding = np.asarray(embedding, dtype=np.float64).reshape(-1)
    return embedding / max(float(np.linalg.norm(embedding)), 1e-12)


class ResemblyzerEncoder(SpeakerEncoder):
    def __init__(self, model: Optional[str] = None, device: str = "cpu"):
        from resemblyzer import VoiceEncoder  # optional heavy import (webrtcvad, librosa)

        if model:
            logger.warning("resemblyzer: ignoring model %r, the encoder ships in the package", model)
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        trimmed = preprocess_wav(np.asarray(audio, dtype=np.float32))
        # An almost silent output loses everything to the VAD: embed it untrimmed rather than fail.
        return _unit(self.encoder.embed_utterance(trimmed if len(trimmed) else np.asarray(audio, np.float32)))


class WavLMEncoder(SpeakerEncoder):
    def __init__(self, model: str, device: str = "cpu"):
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.feature_extractor = AutoFeatureExtractor.from_pretrained(model)
        self.model = WavLMForXVector.from_pretrained(model).to(device).eval()
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.device = device

    def embed(self, audio: np.ndarray) -> np.ndarray:
        inputs = self.feature_extractor(
            np.asarray(audio, dtype=np.float32), sampling_rate=self.sample_rate, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            embedding = self.model(**inputs).embeddings[0]
        return _unit(embedding.float().cpu().numpy())


SPEAKER_ENCODERS = {"resemblyzer": ResemblyzerEncoder, "wavlm": WavLMEncoder}


def build_speaker_encoder(backend: str, model: Optional[str] = None, device: str = "cpu") -> SpeakerEncoder:
    if backend not in SPEAKER_ENCODERS:
        raise ValueError(f"unknown speaker encoder '{backend}'; choose from {sorted(SPEAKER_ENCODERS)}")
    if backend == "wavlm" and not model:
        raise ValueError("the wavlm speaker encoder needs a model directory or hub id")
    return SPEAKER_ENCODERS[backend](model, device=device)


def cosine_similarity_scps(
    encoder: SpeakerEncoder,
    est_scps: Sequence[PathLike],
    ref_scps: Sequence[PathLike],
    permutation: Optional[PathLike] = None,
    key_file: Optional[PathLike] = None,
) -> Dict[str, List[float]]:
    """{key: [SIM of estimate 1, estimate 2, ...]} against the reference matched to each.

    `est_scps[n]` is estimate n+1, `ref_scps[k]` reference speaker k+1. `permutation` is the
    scoring module's file (`key p1 p2`: estimate p_k was matched to reference k); without it
    estimate n is compared with reference n. Keys: `key_file`'s, else all of est_scps[0].
    """
    if len(est_scps) != len(ref_scps):
        raise ValueError(f"{len(est_scps)} estimate scps but {len(ref_scps)} reference scps")
    keys = read_key_file(key_file)
    estimates = [select_entries(scp, keys) for scp in est_scps]
    keys = list(estimates[0])
    references = [select_entries(scp, keys) for scp in ref_scps]
    n_spk = len(est_scps)
    permutations = read_permutation(permutation) if permutation else {}
    similarities: Dict[str, List[float]] = {}
    for key in keys:
        perm = tuple(range(n_spk)) if permutation is None else permutations.get(key)
        if perm is None or sorted(perm) != list(range(n_spk)):
            raise DataDirError(f"{permutation}: key '{key}': no permutation of 1..{n_spk}")
        reference_of = {estimate: reference for reference, estimate in enumerate(perm)}
        scores = []
        for n in range(n_spk):
            est = load_mono(estimates[n][key], f"{est_scps[n]} (key {key})", encoder.sample_rate)
            ref_scp = ref_scps[reference_of[n]]
            ref = load_mono(references[reference_of[n]][key], f"{ref_scp} (key {key})", encoder.sample_rate)
            scores.append(encoder.similarity(est, ref))
        similarities[key] = scores
    return similarities
