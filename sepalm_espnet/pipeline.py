"""SepALM end to end (paper Fig. 1): separator -> units -> corrector -> G2P -> synthesizer -> aligner.

`SepALM.from_pretrained(archive or unpacked dir).separate(audio)` returns, per speaker, the
final waveform with the preliminary and corrected transcripts. Everything after the separator
works on one estimate at a time; estimates longer than `max_segment_sec` are cut at pauses
and the pieces stitched back, so memory stays bounded on long recordings (the separator has
its own segmenting, LongAudioSeparator).

Ablations of paper Table 3 are switches: `mode="separator_only"` (d), `mode="no_aligner"`
(g: the re-synthesized s*), `zero_shot=True` (h: the corrector's base LM without its LoRA
adapter); AR+NAR vs masked (b/c) is whichever synthesizer the archive holds. The cascaded
corrector (e) needs a Whisper N-best and a separate LM: the recipe runs it (bin/cascade_correct).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

import librosa
import numpy as np
import soxr

from sepalm_espnet import zoo
from sepalm_espnet.aligner.inference import AlignerInference
from sepalm_espnet.corrector.generate import CorrectorGenerator
from sepalm_espnet.corrector.units import build_feature_extractor, load_kmeans, units_from_features
from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.format import load_scp_audio
from sepalm_espnet.data.kaldi_dir import PathLike, read_kv
from sepalm_espnet.inference import AudioInput, SeparatorModel, as_samples, resolve_pretrained
from sepalm_espnet.metrics.rtf import RtfMeter
from sepalm_espnet.synthesizer.codec import DacCodec
from sepalm_espnet.synthesizer.g2p import WORD_BOUNDARY, G2p
from sepalm_espnet.synthesizer.resynthesize import Resynthesizer
from sepalm_espnet.synthesizer.t2s import load_text_to_semantic

logger = logging.getLogger(__name__)

MODES = ("sepalm", "no_aligner", "separator_only")
UNITS_FS = 16000  # HuBERT and the log-mel extractor both take 16 kHz speech


@dataclass
class SeparatedSpeaker:
    """One output speaker: `waveform` at the input's rate and length, and its transcripts
    (empty in separator_only mode). `status` is the corrector's (generate.STATUSES) per segment."""

    waveform: np.ndarray
    preliminary: str = ""
    corrected: str = ""
    status: List[str] = field(default_factory=list)


def pause_segments(wave: np.ndarray, fs: int, max_sec: float, top_db: float = 40.0) -> List[Tuple[int, int]]:
    """Contiguous (start, end) pieces covering `wave`, each at most max_sec long, cut in the
    middle of pauses (librosa's non-silent intervals) where there is one, hard cuts otherwise."""
    max_len = max(1, int(max_sec * fs))
    if len(wave) <= max_len:
        return [(0, len(wave))]
    voiced = librosa.effects.split(np.asarray(wave, np.float32), top_db=top_db)
    cuts = [int((end + start) // 2) for (_, end), (start, _) in zip(voiced[:-1], voiced[1:])]
    segments, start = [], 0
    while len(wave) - start > max_len:
        inside = [cut for cut in cuts if start < cut <= start + max_len]
        end = inside[-1] if inside else start + max_len
        segments.append((start, end))
        start = end
    segments.append((start, len(wave)))
    return segments


def _resample(wave: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    if fs_in == fs_out:
        return wave
    return soxr.resample(wave, fs_in, fs_out).astype(np.float32)


def _fit(wave: np.ndarray, length: int) -> np.ndarray:
    return np.pad(wave, (0, max(0, length - len(wave))))[:length]


class SepALM:
    def __init__(
        self,
        separator: SeparatorModel,
        unit_extractor: Any,
        quantizer: Any,
        corrector: Optional[CorrectorGenerator],
        g2p: G2p,
        resynthesizer: Resynthesizer,
        aligner: AlignerInference,
        mode: str = "sepalm",
        max_segment_sec: float = 20.0,
        text_to_semantic: Optional[Tuple[Any, Any]] = None,
    ):
        """text_to_semantic: (TextToSemantic, its TokenList) of a synthesizer conditioned on
        semantic tokens (masked, `condition: semantic`)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        self.separator = separator
        self.unit_extractor = unit_extractor
        self.quantizer = quantizer
        self.corrector = corrector
        self.g2p = g2p
        self.resynthesizer = resynthesizer
        self.aligner = aligner
        self.mode = mode
        self.max_segment_sec = max_segment_sec
        self.text_to_semantic = text_to_semantic
        if resynthesizer is not None and resynthesizer.needs_semantic and text_to_semantic is None:
            raise ValueError("the synthesizer is conditioned on semantic tokens: a text-to-semantic model is needed")
        self.fs = separator.fs
        self.rtf = RtfMeter()  # per component, over every separate() call

    @classmethod
    def from_pretrained(
        cls,
        src: PathLike,
        device: str = "cpu",
        cache_dir: Optional[PathLike] = None,
        mode: str = "sepalm",
        zero_shot: bool = False,
        corrector_options: Optional[Mapping[str, Any]] = None,
        synthesis_options: Optional[Mapping[str, Any]] = None,
        max_segment_sec: float = 20.0,
        g2p_language: str = "en-us",
    ) -> "SepALM":
        """src: a packed SepALM archive (stage 15) or its unpacked directory; weights are read
        from safetensors after every checksum was verified (zoo.unpack)."""
        root = resolve_pretrained(src, cache_dir)
        separator = SeparatorModel.from_pretrained(root, device=device)
        kmeans = zoo.component_files(root, zoo.KMEANS_COMPONENT)
        quantizer, feature_type, feature_conf = load_kmeans(Path(kmeans["centers"]).parent)
        extractor = build_feature_extractor(feature_type, feature_conf, device)
        corrector = CorrectorGenerator.from_files(
            zoo.load_component_config(root, zoo.CORRECTOR_COMPONENT),
            zoo.component_files(root, zoo.CORRECTOR_COMPONENT)[zoo.MODEL_ROLE],
            device=device, zero_shot=zero_shot, **dict(corrector_options or {}),
        )
        codec_file = zoo.component_files(root, zoo.CODEC_COMPONENT)["codec"]
        synthesizer_files = zoo.component_files(root, zoo.SYNTHESIZER_COMPONENT)
        resynthesizer = Resynthesizer.from_files(
            zoo.load_component_config(root, zoo.SYNTHESIZER_COMPONENT), synthesizer_files[zoo.MODEL_ROLE],
            codec_file, device=device, **dict(synthesis_options or {}),
        )
        aligner = AlignerInference.from_pretrained(root, device=device)
        text_to_semantic = None
        if resynthesizer.needs_semantic:
            text_to_semantic = load_text_to_semantic(
                zoo.load_component_config(root, zoo.T2S_COMPONENT),
                zoo.component_files(root, zoo.T2S_COMPONENT)[zoo.MODEL_ROLE], device,
            )
        return cls(separator, extractor, quantizer, corrector, G2p(g2p_language), resynthesizer, aligner,
                   mode=mode, max_segment_sec=max_segment_sec, text_to_semantic=text_to_semantic)

    def separate(self, audio: AudioInput, sample_rate: Optional[int] = None) -> List[SeparatedSpeaker]:
        """sample_rate: required for arrays and tensors; a file's own rate is used otherwise."""
        samples, fs = as_samples(audio, sample_rate)
        if not np.all(np.isfinite(samples)):
            raise AudioError(f"{audio if isinstance(audio, (str, Path)) else 'input'}: NaN or infinite samples")
        seconds = samples.shape[0] / fs
        self.rtf.add_input(seconds)
        with self.rtf.time("separator", seconds):
            estimates = self.separator.separate(samples, fs)
        if self.mode == "separator_only":
            return [SeparatedSpeaker(estimate) for estimate in estimates]
        speakers = []
        for estimate in estimates:
            at_model_rate = _resample(estimate, fs, self.fs)
            pieces = [self._refine(at_model_rate[start:end]) for start, end in
                      pause_segments(at_model_rate, self.fs, self.max_segment_sec)]
            refined = np.concatenate([piece[0] for piece in pieces])
            speakers.append(SeparatedSpeaker(
                _fit(_resample(refined, self.fs, fs), len(estimate)).astype(np.float32),
                " ".join(piece[1].preliminary for piece in pieces if piece[1].preliminary),
                " ".join(piece[1].corrected for piece in pieces if piece[1].corrected),
                [piece[1].status for piece in pieces],
            ))
        return speakers

    def _refine(self, estimate: np.ndarray) -> Tuple[np.ndarray, Any]:
        """One segment of one estimate (at the separator's rate) -> (output, Correction)."""
        seconds = len(estimate) / self.fs
        with self.rtf.time("units", seconds):
            features = self.unit_extractor.extract(_resample(estimate, self.fs, UNITS_FS))
            units = units_from_features(features, self.quantizer)
        with self.rtf.time("corrector", seconds):
            correction = self.corrector.correct([units])[0]
        with self.rtf.time("g2p", seconds):
            phonemes = self.g2p([correction.corrected])[0]
        semantic = None
        if self.text_to_semantic is not None:
            with self.rtf.time("text_to_semantic", seconds):
                semantic = self._semantic(phonemes)
        codec: DacCodec = self.resynthesizer.codec
        with self.rtf.time("synthesizer", seconds):
            at_codec_rate = _resample(estimate, self.fs, codec.sample_rate)
            est_tokens = codec.encode_batch([at_codec_rate])[0].T.cpu().numpy()
            refined = self.resynthesizer.synthesize(est_tokens, phonemes, semantic, len(at_codec_rate))
            refined = _fit(_resample(refined, codec.sample_rate, self.fs), len(estimate))
        if self.mode == "no_aligner":
            return refined, correction
        with self.rtf.time("aligner", seconds):
            aligned = self.aligner.align(
                _resample(estimate, self.fs, self.aligner.fs), _resample(refined, self.fs, self.aligner.fs)
            )
        return _fit(_resample(aligned, self.aligner.fs, self.fs), len(estimate)), correction

    def _semantic(self, phonemes: str) -> List[int]:
        """Greedy semantic tokens of one phoneme string (an empty one stands for a pause)."""
        import torch

        model, token_list = self.text_to_semantic
        ids = token_list.encode(phonemes) or token_list.encode(WORD_BOUNDARY)
        device = next(model.parameters()).device
        units, lengths = model.generate(torch.tensor([ids], device=device), torch.tensor([len(ids)], device=device))
        return units[0, : int(lengths[0])].tolist()


def measure_rtf(model: SepALM, wav_scp: PathLike, utterances: int = 4, seconds: float = 5.0) -> RtfMeter:
    """Per-component RTF over the scp's first `utterances` mixtures cut or looped to `seconds`
    (paper §4.3: 5 s inputs); the first also runs once untimed, so warm-up is not counted."""
    entries = list(read_kv(wav_scp).items())[:utterances]
    inputs = []
    for key, value in entries:
        wave, fs = load_scp_audio(value, f"{wav_scp} (key {key})")
        inputs.append((np.resize(wave, int(seconds * fs)), fs))
    model.separate(*inputs[0])
    model.rtf = RtfMeter()
    for wave, fs in inputs:
        model.separate(wave, fs)
    return model.rtf
