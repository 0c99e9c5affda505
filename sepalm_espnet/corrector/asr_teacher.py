"""The ASR teacher of the corrector's knowledge distillation (paper §3.3): Whisper, greedy.

No human transcript exists for the two chain-of-thought steps, so Whisper's greedy transcripts
stand in: of the separated speech ŝ (preliminary target t̂*, `text_pt_spk{n}`) and of the clean
reference s (corrected target t̃*, `text_ct_spk{n}`). Scoring (stage 14) can use the same
teacher as its WER transcriber: the paper uses Whisper-tiny for both.

Backends (`build_asr_teacher`):

- `whisper` (openai-whisper): a model name (downloaded on first use) or a local .pt checkpoint.
  Utterances of a batch are decoded together in one `whisper.decode` call; inputs longer than
  30 s are cut into equal windows of at most 30 s whose transcripts are joined.
- `faster_whisper`: a CTranslate2 model directory (or a name that faster-whisper resolves on
  the Hugging Face hub; HF_HUB_OFFLINE is respected). Utterances are decoded one at a time:
  Whisper pads every input to a 30 s window, so the encoder (about 80% of the time of a 2-3 s
  clip) does the same work batched or not, and on CPU it does it slower batched.
  Measured (bench/teacher_speed.py and direct CTranslate2 calls: Whisper base int8, 1 thread,
  espeak-ng clips of 2.4 s, shared 2-core machine, passes interleaved): BatchedInferencePipeline
  (clip_timestamps over the concatenation) gives the same text, 20/20 clips, but took 0.94x and
  1.05x (batches of 4) and 1.03x and 1.07x (batches of 8) the CPU time of one at a time in two
  runs: no gain beyond the ~5% noise. Encoding 8 windows as 2 batches of 4 took 16.3-17.3 s
  against 13.0-14.1 s one by one, while greedy decoding of 8 together saved 2-10% of its
  0.35 s a clip. GPUs were not measured. Long inputs are windowed by faster-whisper itself.

Both decode greedily (temperature 0, no fallback, no beam), in English, without timestamps
and without conditioning on previous text, and transcribe every utterance (faster-whisper's
no-speech skipping is off, as openai-whisper's `decode` has none). Threads follow
OMP_NUM_THREADS.

Both stop a 30 s window at `max_tokens` text tokens (openai-whisper's own default, 224; a
window of speech needs about 100). Greedy Whisper on badly separated speech can loop on a
phrase until that limit: such a transcript is marked (`Transcript.length_limited`), and
`transcribe_scp` writes the mark of every key beside the text (`<text>.asr_status`:
`complete` or `length_limit`), which stage 14 counts into RESULTS.md.

Transcripts are written normalised (`text_norm.normalize_text`). A clean-reference transcript
is stored under the speaker order of the separated estimates, see `transcribe_references`.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sepalm_espnet.corrector.text_norm import normalize_text
from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_key_file, read_kv, select_entries, write_kv

# Each backend imports its package when built, and transcribe_references the scoring module
# (fast_bss_eval, pystoi, scipy.signal: ~2 s) when called: a stage 5 job pays for what it uses.

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
LANGUAGE = "en"
MAX_TOKENS = 224  # text tokens per 30 s window: openai-whisper's default sample_len (n_text_ctx // 2)
STATUS_SUFFIX = ".asr_status"
COMPLETE, LENGTH_LIMIT = "complete", "length_limit"


@dataclass(frozen=True)
class Transcript:
    text: str  # raw (unnormalised)
    length_limited: bool = False  # a window's decoding reached max_tokens without its end token


def status_path(text_path: PathLike) -> Path:
    """Where transcribe_scp writes the per-key COMPLETE / LENGTH_LIMIT marks of a text."""
    text_path = Path(text_path)
    return text_path.with_name(text_path.name + STATUS_SUFFIX)


class AsrTeacher(abc.ABC):
    """Greedy English transcription of 16 kHz mono float32 speech of any length."""

    @abc.abstractmethod
    def transcribe(self, audios: Sequence[np.ndarray]) -> List[Transcript]:
        """One transcript per input, in input order."""


class OpenAIWhisperTeacher(AsrTeacher):
    def __init__(self, model: str, device: str = "cpu", max_tokens: int = MAX_TOKENS):
        import whisper

        self.model = whisper.load_model(model, device=device).eval()
        # Beyond half the text context, whisper.decode would also cut the prompt.
        self.max_tokens = min(max_tokens, self.model.dims.n_text_ctx // 2)
        if self.max_tokens < max_tokens:
            logger.warning("%s: max_tokens %d lowered to the model's %d", model, max_tokens, self.max_tokens)
        self.options = whisper.DecodingOptions(
            task="transcribe",
            language=LANGUAGE,
            temperature=0.0,
            sample_len=self.max_tokens,
            without_timestamps=True,
            fp16=device != "cpu",
        )

    def transcribe(self, audios: Sequence[np.ndarray]) -> List[Transcript]:
        import torch
        import whisper
        from whisper.audio import N_SAMPLES

        windows, owners = [], []
        for index, audio in enumerate(audios):
            n_windows = max(1, -(-len(audio) // N_SAMPLES))
            for window in np.array_split(audio, n_windows):
                windows.append(window)
                owners.append(index)
        mels = torch.stack([
            whisper.log_mel_spectrogram(
                whisper.pad_or_trim(window), n_mels=self.model.dims.n_mels, device=self.model.device
            )
            for window in windows
        ])
        with torch.inference_mode():
            results = whisper.decode(self.model, mels, self.options)
        pieces: List[List[str]] = [[] for _ in audios]
        limited = [False] * len(audios)
        for owner, result in zip(owners, results):
            pieces[owner].append(result.text.strip())
            limited[owner] |= len(result.tokens) >= self.max_tokens
        return [Transcript(" ".join(piece for piece in utterance if piece), hit)
                for utterance, hit in zip(pieces, limited)]


class FasterWhisperTeacher(AsrTeacher):
    # Greedy, English (no language detection), no timestamps, no temperature fallback, no VAD,
    # no previous-text prompt, no no-speech skipping.
    DECODE_OPTIONS = dict(
        language=LANGUAGE,
        task="transcribe",
        beam_size=1,
        best_of=1,
        temperature=0.0,
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,
        no_speech_threshold=None,
    )

    def __init__(self, model: str, device: str = "cpu", compute_type: Optional[str] = None, cpu_threads: int = 0,
                 max_tokens: int = MAX_TOKENS):
        """compute_type defaults to int8 on CPU (fastest there) and float16 on GPU; cpu_threads 0
        follows OMP_NUM_THREADS."""
        from faster_whisper import WhisperModel

        if compute_type is None:
            compute_type = "int8" if device == "cpu" else "float16"
        self.model = WhisperModel(model, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        self.max_tokens = max_tokens

    def transcribe(self, audios: Sequence[np.ndarray]) -> List[Transcript]:
        return [self._transcribe_one(audio) for audio in audios]

    def _transcribe_one(self, audio: np.ndarray) -> Transcript:
        segments, _ = self.model.transcribe(audio, max_new_tokens=self.max_tokens, **self.DECODE_OPTIONS)
        segments = list(segments)  # without timestamps: one segment per 30 s window
        return Transcript("".join(segment.text for segment in segments).strip(),
                          any(len(segment.tokens) >= self.max_tokens for segment in segments))


ASR_TEACHERS = {"whisper": OpenAIWhisperTeacher, "faster_whisper": FasterWhisperTeacher}


def build_asr_teacher(backend: str, model: str, device: str = "cpu", **backend_options) -> AsrTeacher:
    """`backend` is a key of ASR_TEACHERS; `backend_options` go to its constructor."""
    if backend not in ASR_TEACHERS:
        raise ValueError(f"unknown ASR teacher backend '{backend}'; choose from {sorted(ASR_TEACHERS)}")
    return ASR_TEACHERS[backend](model, device=device, **backend_options)


def transcribe_entries(teacher: AsrTeacher, entries: Dict[str, str], where: PathLike,
                       batch_size: int = 8, progress=None) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Normalised transcripts of `key -> audio` entries, `batch_size` utterances per call, and
    each key's status (COMPLETE or LENGTH_LIMIT, logged); `progress(n)` after each batch."""
    keys = list(entries)
    texts: Dict[str, str] = {}
    statuses: Dict[str, str] = {}
    for start in range(0, len(keys), batch_size):
        batch = keys[start:start + batch_size]
        audios = [load_mono(entries[key], f"{where} (key {key})", SAMPLE_RATE) for key in batch]
        for key, transcript in zip(batch, teacher.transcribe(audios), strict=True):
            texts[key] = normalize_text(transcript.text)
            statuses[key] = LENGTH_LIMIT if transcript.length_limited else COMPLETE
            if transcript.length_limited:
                logger.warning("%s: key %s: the ASR decoding hit its token limit (a looping transcript)", where, key)
        logger.info("%s: transcribed %d/%d utterances", where, len(texts), len(keys))
        if progress is not None:
            progress(len(batch))
    n_limited = sum(status == LENGTH_LIMIT for status in statuses.values())
    if n_limited:
        logger.warning("%s: %d of %d transcripts hit the ASR token limit", where, n_limited, len(keys))
    return texts, statuses


def write_transcripts(out_text: PathLike, texts: Dict[str, str], statuses: Dict[str, str]) -> None:
    """The Kaldi text and, beside it, its statuses (status_path)."""
    write_kv(status_path(out_text), statuses)
    write_kv(out_text, texts)


def count_length_limited(text_path: PathLike) -> Optional[int]:
    """LENGTH_LIMIT marks beside a text; None when it has no status file."""
    path = status_path(text_path)
    if not path.is_file():
        return None
    statuses = read_kv(path)
    unknown = sorted(set(statuses.values()) - {COMPLETE, LENGTH_LIMIT})
    if unknown:
        raise DataDirError(f"{path}: unknown status '{unknown[0]}' (expected {COMPLETE} or {LENGTH_LIMIT})")
    return sum(value == LENGTH_LIMIT for value in statuses.values())


def transcribe_scp(teacher: AsrTeacher, wav_scp: PathLike, out_text: PathLike,
                   key_file: Optional[PathLike] = None, batch_size: int = 8) -> Dict[str, str]:
    """Write a sorted Kaldi text `key transcript` (possibly empty) of wav_scp's audio, and its
    statuses beside it.

    Only the keys listed in `key_file` (first column) are transcribed when it is given: one
    JOB of a split run. The files appear only when complete.
    """
    entries = select_entries(wav_scp, read_key_file(key_file))
    texts, statuses = transcribe_entries(teacher, entries, wav_scp, batch_size)
    write_transcripts(out_text, texts, statuses)
    return texts


def transcribe_references(teacher: AsrTeacher, ref_scps: Sequence[PathLike],
                          out_texts: Sequence[PathLike], permutation: PathLike,
                          key_file: Optional[PathLike] = None,
                          batch_size: int = 8) -> List[Dict[str, str]]:
    """Transcribe clean references into texts ordered like the separated estimates.

    `ref_scps[k]` is reference speaker k+1 (`data/<set>/spk{k+1}.scp`). `permutation` is the
    scoring module's file: a line `key p1 p2 ...` says that estimate p_k (1-based, the
    separator's `spk{p_k}.scp`) was matched to reference speaker k. The output follows the
    estimates: `out_texts[n-1][key]` is the transcript of the reference matched to estimate n,
    so that `text_ct_spk{n}` and `text_pt_spk{n}` describe the same talker. Keys come from
    `key_file` if given, else from the first reference scp.
    """
    from sepalm_espnet.metrics.separation import read_permutation

    if len(ref_scps) != len(out_texts):
        raise ValueError(f"{len(ref_scps)} reference scps but {len(out_texts)} output texts")
    keys = read_key_file(key_file)
    if keys is None:
        keys = list(read_kv(ref_scps[0]))
    permutations = read_permutation(permutation)
    speakers = list(range(len(ref_scps)))
    for key in keys:
        if key not in permutations:
            raise DataDirError(f"{permutation}: no line for key '{key}'")
        if sorted(permutations[key]) != speakers:
            raise DataDirError(
                f"{permutation}: key '{key}': expected a permutation of 1..{len(speakers)}, got "
                f"{' '.join(str(i + 1) for i in permutations[key])}"
            )
    reference_texts = [
        transcribe_entries(teacher, select_entries(scp, keys), scp, batch_size) for scp in ref_scps
    ]
    estimate_texts: List[Dict[str, str]] = [{} for _ in speakers]
    estimate_statuses: List[Dict[str, str]] = [{} for _ in speakers]
    for key in keys:
        for reference, estimate in enumerate(permutations[key]):
            estimate_texts[estimate][key] = reference_texts[reference][0][key]
            estimate_statuses[estimate][key] = reference_texts[reference][1][key]
    for out_text, texts, statuses in zip(out_texts, estimate_texts, estimate_statuses):
        write_transcripts(out_text, texts, statuses)
    return estimate_texts
