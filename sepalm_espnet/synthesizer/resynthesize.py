"""Stage 11: refined speech s* from Ŝ's codec tokens and the corrected text (paper §3.4).

`Resynthesizer` runs a trained synthesizer's generate() (AR+NAR or masked: one signature and
one `SynthesisOptions` for both) on one utterance and decodes the generated tokens with the DAC
decoder to exactly the length of the separated estimate, so the aligner (stage 12) can combine
ŝ and s* sample by sample. The AR model chooses its own length T''; its waveform is cut or
padded with silence to that length.

`synthesize_scp` does a whole token scp (or a JOB's keys) into <output_dir>/wavs/<key>.wav,
speech.scp and rtf.json (sepalm_espnet.metrics.rtf's record, component "synthesizer": model +
codec decoding over the audio produced; the recipe's job merger adds JOB records up).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from sepalm_espnet.data.audio import write_audio
from sepalm_espnet.data.format import load_mono
from sepalm_espnet.metrics.rtf import RTF_FILE, RtfMeter
from sepalm_espnet.data.kaldi_dir import (
    DataDirError,
    PathLike,
    read_key_file,
    read_text,
    select_entries,
    write_kv,
)
from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.synthesizer.codec import load_codec
from sepalm_espnet.synthesizer.codec_base import TokenCodec
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID, SynthesisOptions
from sepalm_espnet.synthesizer.masked import MaskedSynthesizer
from sepalm_espnet.synthesizer.token_io import TokenReader

logger = logging.getLogger(__name__)

SPEECH_SCP = "speech.scp"
WAV_DIR = "wavs"
RTF_COMPONENT = "synthesizer"  # rtf.json's component name (metrics.rtf format)
CODEC_COMPONENT = "codec"
# The AR stage may end a little early or late; more than this is worth a warning.
LENGTH_WARNING_FRAMES = 5


class ResynthesisError(ValueError):
    """An utterance cannot be synthesized, or an output is unusable; the message names it."""


Synthesizer = Union[ArNarSynthesizer, MaskedSynthesizer]


def load_synthesizer(
    train_config: Union[PathLike, Mapping[str, Any]], model_file: PathLike, device: str = "cpu"
) -> Tuple[Synthesizer, Optional[TokenList]]:
    """(model in eval mode, its TokenList or None) from ESPnet's config.yaml + .pth.

    Built by SynthesizerTask.build_model like in training; the weights are read without
    unpickling objects and must match every parameter.
    """
    from sepalm_espnet.tasks.loading import build_trained_model
    from sepalm_espnet.tasks.synthesizer import SynthesizerTask, load_token_list  # 20 s of ESPnet imports

    model, args = build_trained_model(SynthesizerTask, train_config, model_file, device)
    return model, load_token_list(args.token_list)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Cut, or pad with silence, to num_samples."""
    if len(wave) >= num_samples:
        return wave[:num_samples]
    return np.pad(wave, (0, num_samples - len(wave)))


class Resynthesizer:
    """A synthesizer + codec with fixed generation options; one utterance per call."""

    def __init__(
        self,
        model: Synthesizer,
        codec: TokenCodec,
        token_list: Optional[TokenList] = None,
        options: SynthesisOptions = SynthesisOptions(),
    ):
        """options.seed is reset before every utterance (in generate()), so an utterance's
        output does not depend on the JOB split."""
        if model.num_codebooks > codec.n_codebooks or model.codebook_size != codec.codebook_size:
            raise ResynthesisError(
                f"the synthesizer models {model.num_codebooks} codebooks of {model.codebook_size}; "
                f"the codec has {codec.n_codebooks} of {codec.codebook_size}"
            )
        self.model = model.eval()
        self.codec = codec
        self.token_list = token_list
        self.device = next(model.parameters()).device
        self.options = options

    @classmethod
    def from_files(
        cls,
        train_config: PathLike,
        model_file: PathLike,
        codec: Union[PathLike, TokenCodec],
        device: str = "cpu",
        options: SynthesisOptions = SynthesisOptions(),
    ) -> "Resynthesizer":
        """codec: a loaded codec, or what codec.load_codec takes (DAC release tag or weights
        file, EnCodec dir)."""
        model, token_list = load_synthesizer(train_config, model_file, device)
        if isinstance(codec, (str, os.PathLike)):
            codec = load_codec(codec, n_codebooks=model.num_codebooks, device=device)
        return cls(model, codec, token_list, options)

    @property
    def needs_phonemes(self) -> bool:
        return self.model.condition == "phoneme"

    @property
    def needs_semantic(self) -> bool:
        return self.model.condition == "semantic"

    def padded_ids(self, sequences: Sequence[Sequence[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids padded with PAD_ID, as the task's collate pads them, and the (B,) lengths."""
        tensors = [torch.as_tensor(list(ids), dtype=torch.long) for ids in sequences]
        padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=PAD_ID)
        return padded.to(self.device), torch.tensor([len(ids) for ids in tensors], device=self.device)

    def generate_tokens(
        self, est_tokens: np.ndarray, phonemes: Optional[str] = None, semantic: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        """(T', Q) tokens of Ŝ -> (Q, T'') tokens of S."""
        return self.generate_tokens_batch([est_tokens], [phonemes], [semantic])[0]

    def generate_tokens_batch(
        self,
        est_tokens: Sequence[np.ndarray],
        phonemes: Sequence[Optional[str]],
        semantic: Sequence[Optional[Sequence[int]]],
    ) -> List[torch.Tensor]:
        """(T', Q) tokens of each Ŝ -> (Q, T'') tokens of each S, in one padded generate() call.

        Greedy decoding gives each utterance what it gets alone (the models mask the padding);
        sampling draws the batch from one stream seeded once, so a draw depends on the batch."""
        if not len(est_tokens) == len(phonemes) == len(semantic):
            raise ResynthesisError(f"{len(est_tokens)} token arrays, {len(phonemes)} phoneme strings, {len(semantic)} unit lists")
        arrays = [np.asarray(tokens) for tokens in est_tokens]
        for tokens in arrays:
            if tokens.ndim != 2 or tokens.shape[0] == 0:
                raise ResynthesisError(f"expected (T', Q) tokens with T' > 0, got {tokens.shape}")
        est = torch.nn.utils.rnn.pad_sequence(
            [torch.as_tensor(tokens[:, : self.model.num_codebooks], dtype=torch.long) for tokens in arrays],
            batch_first=True, padding_value=PAD_ID,
        ).to(self.device)
        est_lengths = torch.tensor([len(tokens) for tokens in arrays], device=self.device)
        inputs: Dict[str, torch.Tensor] = {}
        if self.needs_phonemes:
            if any(text is None for text in phonemes):
                raise ResynthesisError("this synthesizer is conditioned on phonemes; none given")
            if self.token_list is None:
                raise ResynthesisError("the synthesizer's config carries no token_list to read the phonemes with")
            inputs["phonemes"], inputs["phonemes_lengths"] = self.padded_ids([self.token_list.encode(text) for text in phonemes])
        if self.needs_semantic:
            if any(units is None for units in semantic):
                raise ResynthesisError("this synthesizer is conditioned on semantic tokens; none given")
            inputs["semantic"], inputs["semantic_lengths"] = self.padded_ids(semantic)
        tokens, lengths = self.model.generate(est, est_lengths, **inputs, options=self.options)
        return [item[: int(length)].T for item, length in zip(tokens, lengths)]

    def synthesize(
        self,
        est_tokens: np.ndarray,
        phonemes: Optional[str],
        semantic: Optional[Sequence[int]],
        num_samples: int,
    ) -> np.ndarray:
        """s* as float32 of exactly num_samples samples at the codec's rate."""
        return self.synthesize_batch([est_tokens], [phonemes], [semantic], [num_samples])[0]

    def synthesize_batch(
        self,
        est_tokens: Sequence[np.ndarray],
        phonemes: Sequence[Optional[str]],
        semantic: Sequence[Optional[Sequence[int]]],
        num_samples: Sequence[int],
    ) -> List[np.ndarray]:
        """synthesize() of each utterance, generated together (generate_tokens_batch); the codec
        decodes them one by one: its convolutions would see a batch's padding."""
        waves = []
        for tokens, samples in zip(self.generate_tokens_batch(est_tokens, phonemes, semantic), num_samples):
            frames, expected = tokens.size(1), self.codec.num_frames(samples)
            if abs(frames - expected) > LENGTH_WARNING_FRAMES:
                logger.warning("generated %d frames for %d samples (%d frames)", frames, samples, expected)
            wave = self.codec.decode(tokens[None], samples if frames == expected else None)[0]
            waves.append(fit_length(wave.float().cpu().numpy(), samples).astype(np.float32))
        return waves


def read_semantic(path: PathLike) -> Dict[str, List[int]]:
    """`key u1 u2 ...` lines (text_int) -> ids."""
    units: Dict[str, List[int]] = {}
    for key, value in read_text(path).items():
        try:
            units[key] = [int(token) for token in value.split()]
        except ValueError:
            raise DataDirError(f"{path}: '{key}' holds a non-integer unit") from None
    return units


def write_speech_scp(
    keys: Sequence[str],
    wav_scp: PathLike,
    output_dir: PathLike,
    rate: int,
    component: str,
    make_wave: Callable[[str, int], np.ndarray],
) -> RtfMeter:
    """make_wave(key, num_samples) for every key -> wavs/<key>.wav, speech.scp, rtf.json.

    wav_scp gives each output its length (the estimate it refines, or the reference it codes);
    rtf.json (metrics.rtf's format) times make_wave as `component` over the output audio.
    """
    out = Path(output_dir)
    wavs = select_entries(wav_scp, keys)
    speech: Dict[str, str] = {}
    meter = RtfMeter()
    for index, key in enumerate(keys, 1):
        num_samples = len(load_mono(wavs[key], f"{wav_scp} (key {key})", rate))
        seconds = num_samples / rate
        meter.add_input(seconds)
        try:
            with meter.time(component, seconds):
                wave = make_wave(key, num_samples)
        except ValueError as exc:
            raise ResynthesisError(f"'{key}': {exc}") from exc
        if not np.all(np.isfinite(wave)):
            raise ResynthesisError(f"'{key}': the synthesized waveform has NaN or infinite samples")
        path = (out / WAV_DIR / f"{key}.wav").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(path, wave, rate)
        speech[key] = str(path)
        logger.info("%d/%d %s: %.2f s of audio, RTF so far %.3f", index, len(keys), key, seconds, meter.rtf)
    write_kv(out / SPEECH_SCP, speech)
    meter.write(out / RTF_FILE)
    logger.info("%s: RTF %s over %d utterances", out, meter.rtf, len(keys))
    return meter


def synthesize_scp(
    resynthesizer: Resynthesizer,
    est_tokens_scp: PathLike,
    wav_scp: PathLike,
    output_dir: PathLike,
    phonemes_path: Optional[PathLike] = None,
    semantic_path: Optional[PathLike] = None,
    key_file: Optional[PathLike] = None,
) -> RtfMeter:
    """Every key of the token scp (or key_file) -> wavs/<key>.wav, speech.scp, rtf.json.

    wav_scp: the separated estimates, for each output's length. rtf.json's one component
    "synthesizer" is model + codec decoding.
    """
    keys = list(select_entries(est_tokens_scp, read_key_file(key_file)))
    reader = TokenReader(est_tokens_scp)
    phonemes = read_text(phonemes_path) if phonemes_path is not None else {}
    semantic = read_semantic(semantic_path) if semantic_path is not None else {}
    for key in keys:
        if phonemes_path is not None and key not in phonemes:
            raise DataDirError(f"{phonemes_path}: no phonemes for '{key}'")
        if semantic_path is not None and key not in semantic:
            raise DataDirError(f"{semantic_path}: no semantic tokens for '{key}'")

    def refined(key: str, num_samples: int) -> np.ndarray:
        # TokenReader gives the codec's (Q, T'); synthesize() takes (T', Q) like the pipeline's
        return resynthesizer.synthesize(reader[key].T, phonemes.get(key), semantic.get(key), num_samples)

    return write_speech_scp(keys, wav_scp, output_dir, resynthesizer.codec.sample_rate, RTF_COMPONENT, refined)


def codec_resynthesis_scp(
    codec: TokenCodec, tokens_scp: PathLike, wav_scp: PathLike, output_dir: PathLike, key_file: Optional[PathLike] = None
) -> RtfMeter:
    """The codec's decoding of every token entry, as long as its wav_scp entry: with the
    references' tokens, the best any synthesizer over this codec can do (the oracle ladder's top)."""
    keys = list(select_entries(tokens_scp, read_key_file(key_file)))
    reader = TokenReader(tokens_scp)

    def decoded(key: str, num_samples: int) -> np.ndarray:
        tokens = torch.as_tensor(reader[key], device=codec.device)[None]
        if codec.num_frames(num_samples) != tokens.size(-1):
            raise ValueError(f"{tokens.size(-1)} frames for {num_samples} samples ({codec.num_frames(num_samples)} frames)")
        return codec.decode(tokens, num_samples)[0].float().cpu().numpy().astype(np.float32)

    return write_speech_scp(keys, wav_scp, output_dir, codec.sample_rate, CODEC_COMPONENT, decoded)

