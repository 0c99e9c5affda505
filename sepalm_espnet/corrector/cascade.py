"""Cascaded baselines of paper Table 3: Whisper N-best, then a text LM's generative error correction,
zero-shot (row (f): any local causal LM, `GerCorrector.from_pretrained`) or fine-tuned (row (e):
a GerTask checkpoint, LoRA on that LM, `GerCorrector.from_trained`).

Unlike SepALM's corrector, the LM never hears the speech: it reads the N best hypotheses of a
Whisper beam search (N = 3, beam 3) in a HyPoradise-style prompt (Chen et al., 2023, "HyPoradise:
an open baseline for generative speech recognition with large language models") and writes
the true transcription, greedily, up to the end of its line (or its eos). The prompt holds the
normalised hypotheses, exactly what the `nbest` file keeps, so a corrector fine-tuned on `nbest`
files (tasks/ger.py) is prompted at inference as it was in training.

ASR backends (`build_nbest_asr`), both in English without timestamps:
- `faster_whisper`: a CTranslate2 model directory; CTranslate2's Whisper `generate` returns
  the `num_hypotheses` best beams.
- `whisper` (openai-whisper): a model name or .pt checkpoint; `whisper.decode` keeps only the
  best beam, so the decoding task's ranker records the ranking of all finished beams.
Inputs longer than 30 s are cut into equal windows of at most 30 s; hypothesis k of the
utterance is hypothesis k of every window, joined.

Outputs follow corrector inference (`generate.write_corrections`): text_pt is the 1-best
hypothesis, text_ct the LM's correction, status `parsed` or `fallback_preliminary` (the LM
wrote nothing usable: an empty line, or no line end within `max_new_tokens`; text_ct is then
the 1-best), plus `nbest` (`key hyp1 ||| hyp2 ||| hyp3`, normalised). An utterance whose
hypotheses are all empty is not sent to the LM (`fallback_preliminary`, empty). `write_nbests`
alone gives the fine-tuning data of (e): the N-best lists of the train set's estimates.
"""
from __future__ import annotations

import abc
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import whisper
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase
from whisper.audio import N_SAMPLES
from whisper.decoding import DecodingTask, MaximumLikelihoodRanker

from sepalm_espnet.corrector.asr_teacher import LANGUAGE, SAMPLE_RATE
from sepalm_espnet.corrector.generate import FALLBACK_PRELIMINARY, PARSED, Correction, write_corrections
from sepalm_espnet.corrector.ger_model import (  # noqa: F401 (the prompt's names, re-exported)
    GER_PROMPT,
    LINE_END,
    NBEST_SEPARATOR,
    build_ger_prompt,
    join_nbest,
    split_nbest,
)
from sepalm_espnet.corrector.text_norm import normalize_text
from sepalm_espnet.corrector.tokenizer import load_tokenizer
from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_key_file, read_text, select_entries, write_kv
from sepalm_espnet.tasks.ger import GerTask
from sepalm_espnet.tasks.loading import build_trained_model

logger = logging.getLogger(__name__)

NBEST_FILE = "nbest"


def _windows(audio: np.ndarray) -> List[np.ndarray]:
    """Equal pieces of at most Whisper's 30 s input."""
    return list(np.array_split(audio, max(1, -(-len(audio) // N_SAMPLES))))


class NBestAsr(abc.ABC):
    """English N-best transcription of 16 kHz mono float32 speech, by beam search of width N."""

    def __init__(self, nbest: int):
        if nbest < 1:
            raise ValueError(f"nbest must be at least 1, got {nbest}")
        self.nbest = nbest

    def transcribe_nbest(self, audios: Sequence[np.ndarray]) -> List[List[str]]:
        """`nbest` raw hypotheses per input, best first."""
        windows, owners = [], []
        for index, audio in enumerate(audios):
            for window in _windows(audio):
                windows.append(window)
                owners.append(index)
        pieces: List[List[List[str]]] = [[] for _ in audios]
        for owner, hypotheses in zip(owners, self._decode_windows(windows), strict=True):
            if len(hypotheses) != self.nbest:
                raise RuntimeError(f"the decoder returned {len(hypotheses)} hypotheses, expected {self.nbest}")
            pieces[owner].append(hypotheses)
        return [
            [" ".join(window[k] for window in utterance if window[k]) for k in range(self.nbest)]
            for utterance in pieces
        ]

    @abc.abstractmethod
    def _decode_windows(self, windows: List[np.ndarray]) -> List[List[str]]:
        """The N best texts of each window of at most 30 s."""


class FasterWhisperNBest(NBestAsr):
    def __init__(self, model: str, nbest: int = 3, device: str = "cpu", compute_type: Optional[str] = None):
        super().__init__(nbest)
        if compute_type is None:
            compute_type = "int8" if device == "cpu" else "float16"
        self.model = WhisperModel(model, device=device, compute_type=compute_type)
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe",
            language=LANGUAGE if self.model.model.is_multilingual else None,
        )

    def _decode_windows(self, windows: List[np.ndarray]) -> List[List[str]]:
        # As faster-whisper's transcribe: log-mel without the last frame, padded to 30 s.
        features = np.stack([pad_or_trim(self.model.feature_extractor(window)[..., :-1]) for window in windows])
        prompt = self.model.get_prompt(self.tokenizer, [], without_timestamps=True)
        results = self.model.model.generate(
            self.model.encode(features), [prompt] * len(windows), beam_size=self.nbest,
            num_hypotheses=self.nbest, max_length=self.model.max_length, suppress_blank=True,
            suppress_tokens=[-1],
        )
        return [[self.tokenizer.decode(ids).strip() for ids in result.sequences_ids] for result in results]


class _RankingRecorder(MaximumLikelihoodRanker):
    """Whisper's own ranking of the finished beams, remembered instead of only its argmax."""

    def rank(self, tokens, sum_logprobs):
        self.ranked = []
        for candidates, logprobs in zip(tokens, sum_logprobs):
            remaining, order = list(range(len(candidates))), []
            while remaining:  # repeatedly Whisper's best of those left: its scores, its tie-breaking
                [best] = super().rank([[candidates[i] for i in remaining]], [[logprobs[i] for i in remaining]])
                order.append(remaining.pop(best))
            self.ranked.append([candidates[i].tolist() for i in order])
        return super().rank(tokens, sum_logprobs)


class OpenAIWhisperNBest(NBestAsr):
    def __init__(self, model: str, nbest: int = 3, device: str = "cpu"):
        super().__init__(nbest)
        self.model = whisper.load_model(model, device=device).eval()
        self.options = whisper.DecodingOptions(
            task="transcribe", language=LANGUAGE, beam_size=nbest, without_timestamps=True,
            fp16=device != "cpu",
        )

    def _decode_windows(self, windows: List[np.ndarray]) -> List[List[str]]:
        # One window per call: openai-whisper 20250625's beam search fails on batches of several
        # (its cross-attention cache is not repeated per beam).
        return [self._decode_window(window) for window in windows]

    def _decode_window(self, window: np.ndarray) -> List[str]:
        mel = whisper.log_mel_spectrogram(
            whisper.pad_or_trim(window), n_mels=self.model.dims.n_mels, device=self.model.device
        )
        task = DecodingTask(self.model, self.options)
        task.sequence_ranker = recorder = _RankingRecorder(self.options.length_penalty)
        with torch.inference_mode():
            task.run(mel[None])
        [ranked] = recorder.ranked
        return [task.tokenizer.decode(ids).strip() for ids in ranked[: self.nbest]]


NBEST_ASRS = {"faster_whisper": FasterWhisperNBest, "whisper": OpenAIWhisperNBest}


def build_nbest_asr(backend: str, model: str, nbest: int = 3, device: str = "cpu") -> NBestAsr:
    if backend not in NBEST_ASRS:
        raise ValueError(f"unknown N-best ASR backend '{backend}'; choose from {sorted(NBEST_ASRS)}")
    return NBEST_ASRS[backend](model, nbest=nbest, device=device)


@dataclass(frozen=True)
class GerDecodeOptions:
    """Greedy decoding of the N-best corrector, one line per utterance."""

    batch_size: int = field(default=8, metadata={"help": "utterances per ASR and LM call"})
    max_new_tokens: int = field(default=128, metadata={"help": "longest LM answer, in tokens"})

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError(f"batch_size and max_new_tokens must be positive: {self}")


class GerCorrector:
    """A causal LM correcting N-best lists, greedily, in batches: zero-shot (f) or fine-tuned (e)."""

    def __init__(self, lm: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, zero_shot: bool = False,
                 **decode_opts):
        """lm: a transformers causal LM, or a peft one (fine-tuned); zero_shot: its LoRA adapter off."""
        if zero_shot and not hasattr(lm, "disable_adapter"):
            raise ValueError("zero-shot decoding disables the LoRA adapter: this LM has none")
        self.options = GerDecodeOptions(**decode_opts)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # padded positions are masked
        self.lm = lm.eval()
        self.zero_shot = zero_shot
        self.tokenizer = tokenizer
        self.device = next(lm.parameters()).device
        self.generation_config = GenerationConfig(
            max_new_tokens=self.options.max_new_tokens, do_sample=False, num_beams=1, stop_strings=[LINE_END],
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )

    @classmethod
    def from_pretrained(cls, lm_dir: PathLike, device: str = "cpu", dtype: str = "float32",
                        **decode_opts) -> "GerCorrector":
        """Row (f): a local transformers causal LM directory (with its tokenizer), as it is."""
        tokenizer = AutoTokenizer.from_pretrained(str(lm_dir), local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(str(lm_dir), local_files_only=True, dtype=getattr(torch, dtype))
        return cls(lm.to(device), tokenizer, **decode_opts)

    @classmethod
    def from_trained(cls, train_config: Optional[PathLike], model_file: PathLike, device: str = "cpu",
                     zero_shot: bool = False, **decode_opts) -> "GerCorrector":
        """Row (e): a GerTask checkpoint (config.yaml beside it if `train_config` is None), loaded
        safely and strictly; its tokenizer is the config's `tokenizer_dir`."""
        model, args = build_trained_model(GerTask, train_config, model_file, device)
        return cls(model.lm, load_tokenizer(args.tokenizer_dir), zero_shot=zero_shot, **decode_opts)

    def correct(self, nbests: Sequence[Sequence[str]], keys: Optional[Sequence[str]] = None) -> List[Correction]:
        """text_pt = normalised 1-best; text_ct = the LM's line, or the 1-best when it wrote none."""
        keys = [f"#{i}" for i in range(len(nbests))] if keys is None else list(keys)
        normalised = [[normalize_text(h) for h in hypotheses] for hypotheses in nbests]
        answers: Dict[int, Optional[str]] = {}
        todo = [i for i, hypotheses in enumerate(normalised) if any(hypotheses)]
        for start in range(0, len(todo), self.options.batch_size):
            batch = todo[start : start + self.options.batch_size]
            answers.update(zip(batch, self._generate([build_ger_prompt(normalised[i]) for i in batch])))
        corrections = []
        for i, hypotheses in enumerate(normalised):
            best = hypotheses[0]
            answer = normalize_text(answers[i]) if answers.get(i) is not None else ""
            if answer:
                corrections.append(Correction(best, answer, PARSED))
            else:
                if i in answers:
                    logger.warning("%s: %s (the LM wrote no transcription line)", keys[i], FALLBACK_PRELIMINARY)
                corrections.append(Correction(best, best, FALLBACK_PRELIMINARY))
        return corrections

    def _generate(self, prompts: List[str]) -> List[Optional[str]]:
        """The first line of each continuation; None where no line end nor eos came."""
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(self.device)
        adapter = self.lm.disable_adapter() if self.zero_shot else contextlib.nullcontext()
        with torch.inference_mode(), adapter:
            output = self.lm.generate(**inputs, generation_config=self.generation_config, tokenizer=self.tokenizer)
        answers = []
        for ids in output[:, inputs["input_ids"].size(1):].tolist():
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if LINE_END in text:
                answers.append(text[: text.index(LINE_END)])
            elif self.tokenizer.eos_token_id in ids:
                answers.append(text)
            else:
                answers.append(None)
        return answers


def nbest_scp(asr: NBestAsr, wav_scp: PathLike, key_file: Optional[PathLike] = None,
              batch_size: int = 8) -> Dict[str, List[str]]:
    """Raw N-best lists of wav_scp's audio (one JOB's keys if `key_file`), sorted by key."""
    entries = select_entries(wav_scp, read_key_file(key_file))
    keys = list(entries)
    nbests: Dict[str, List[str]] = {}
    for start in range(0, len(keys), batch_size):
        batch = keys[start : start + batch_size]
        audios = [load_mono(entries[key], f"{wav_scp} (key {key})", SAMPLE_RATE) for key in batch]
        nbests.update(zip(batch, asr.transcribe_nbest(audios), strict=True))
        logger.info("%s: N-best of %d/%d utterances", wav_scp, len(nbests), len(keys))
    return nbests


def correct_nbests(corrector: GerCorrector, nbests: Dict[str, List[str]], output_dir: PathLike) -> Dict[str, int]:
    """The LM's corrections written as an inference directory, with the normalised N-best lists."""
    keys = list(nbests)
    corrections = corrector.correct([nbests[key] for key in keys], keys)
    write_nbests(nbests, output_dir)
    counts = write_corrections(output_dir, dict(zip(keys, corrections)))
    logger.info("%s: %s", output_dir, counts)
    return counts


def write_nbests(nbests: Dict[str, List[str]], output_dir: PathLike) -> Path:
    """`output_dir/nbest`, normalised: the LM's prompts at inference, its inputs in fine-tuning (e)."""
    path = Path(output_dir) / NBEST_FILE
    write_kv(path, {key: join_nbest([normalize_text(h) for h in hypotheses]) for key, hypotheses in nbests.items()})
    return path


def read_nbests(path: PathLike, key_file: Optional[PathLike] = None) -> Dict[str, List[str]]:
    """An `nbest` file (one JOB's keys if `key_file`), sorted by key: correct it without rerunning the ASR."""
    entries = read_text(path)
    keys = sorted(entries) if key_file is None else sorted(read_key_file(key_file))
    missing = [key for key in keys if key not in entries]
    if missing:
        raise DataDirError(f"{path}: {len(missing)} requested keys are missing, e.g. '{missing[0]}'")
    return {key: split_nbest(entries[key]) for key in keys}
