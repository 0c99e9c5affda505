"""Corrector inference (stage 8): units -> preliminary and corrected transcripts, eq. 3 then eq. 4.

Generation runs the chain of thought in two HF `generate` calls per batch (see corrector.prompt):
step I continues `build_prompt(units)` until the generated text ends with "." (a stop string:
transformers matches it on the decoded SentencePiece pieces, and a transcript piece can hold "."
only at its end, since the template puts a space after it); step II continues
`build_prompt(units, preliminary)` until <eoa> (the eos token of that call). The answer
`Preliminary transcription: … Corrected transcription: … <eoa>` is then parsed strictly
(`prompt.parse_output`).

An answer that does not parse falls back, and says so in its status:
- `fallback_preliminary`: step I gave a non-empty preliminary transcript; it is both outputs.
- `fallback_teacher`: no usable preliminary (step I ran past the length limit or repeated the
  template, or it was empty, or the utterance has no units): the teacher transcript (Whisper
  on the separated speech) if given, else "", is both outputs.

Paper decoding (§4.2): at most 1024 tokens (prompt included), top-k 40, top-p 0.9, temperature
0.1, one beam. The length limit is per utterance, whatever the batch: a batch generates up to
the budget of its shortest prompt and each answer is cut to its own budget, so greedy decoding
gives the same answers batched or not. Batches are formed from utterances of similar prompt
length (less padding) and padded on the left, as a decoder-only LM needs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, set_seed

from sepalm_espnet.corrector.model import AudioLMCorrector
from sepalm_espnet.corrector.prompt import (
    CORRECTED_HEADER,
    EOA,
    PRELIMINARY_HEADER,
    MalformedOutputError,
    encode_prompt,
    parse_output,
)
from sepalm_espnet.corrector.text_norm import normalize_text
from sepalm_espnet.corrector.tokenizer import load_tokenizer, padding_token_id
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_text, write_kv

logger = logging.getLogger(__name__)

PARSED = "parsed"
FALLBACK_PRELIMINARY = "fallback_preliminary"
FALLBACK_TEACHER = "fallback_teacher"
STATUSES = (PARSED, FALLBACK_PRELIMINARY, FALLBACK_TEACHER)

PRELIMINARY_FILE, CORRECTED_FILE, STATUS_FILE, FALLBACK_FILE = "text_pt", "text_ct", "status", "fallback.json"
STEP_I_STOP = "."  # closes the preliminary transcript in the template
EXTRA_FILES = ("nbest",)  # merged along when every split has one (the cascade's N-best lists)


@dataclass(frozen=True)
class Correction:
    preliminary: str
    corrected: str
    status: str  # one of STATUSES


@dataclass(frozen=True)
class DecodeOptions:
    """Corrector decoding, paper §4.2 by default."""

    do_sample: bool = field(default=True, metadata={"help": "sample (top-k, top-p, temperature); false: greedy"})
    top_k: int = field(default=40, metadata={"help": "sample from the k most likely tokens only"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling mass"})
    temperature: float = field(default=0.1, metadata={"help": "sampling temperature"})
    max_length: int = field(default=1024, metadata={"help": "most tokens per utterance, prompt included"})
    batch_size: int = field(default=8, metadata={"help": "utterances decoded at once (batched by prompt length)"})
    seed: int = field(default=0, metadata={"help": "seed set at the start of every correct() call"})
    use_cache: bool = field(
        default=True, metadata={"help": "reuse attention keys/values; false only to measure what the cache saves"}
    )

    def __post_init__(self):
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError(f"max_length and batch_size must be positive: {self}")


def load_corrector(
    train_config: Union[None, PathLike, Mapping[str, Any]], model_file: PathLike, device: str = "cpu"
) -> Tuple[AudioLMCorrector, argparse.Namespace]:
    """A trained corrector in eval mode and its config (tasks.loading: safe and strict)."""
    from sepalm_espnet.tasks.corrector import CorrectorTask
    from sepalm_espnet.tasks.loading import build_trained_model

    return build_trained_model(CorrectorTask, train_config, model_file, device)


class CorrectorGenerator:
    """Two-step chain-of-thought decoding of a trained corrector, batched."""

    def __init__(
        self,
        corrector: AudioLMCorrector,
        tokenizer: PreTrainedTokenizerBase,
        zero_shot: bool = False,
        **decode_opts,
    ):
        """zero_shot: the base LM alone (LoRA adapter disabled), paper Table 3 (h)."""
        if zero_shot and not corrector.use_lora:
            raise ValueError(
                "zero-shot decoding runs the base LM with the LoRA adapter disabled: it needs a "
                "LoRA-fine-tuned corrector (use_lora: true), this one was trained without an adapter"
            )
        self.options = DecodeOptions(**decode_opts)
        self.lm = corrector.lm.eval()
        self.zero_shot = zero_shot
        self.tokenizer = tokenizer
        self.device = next(self.lm.parameters()).device
        self.pad_id = padding_token_id(tokenizer)
        self.eoa_id = tokenizer.convert_tokens_to_ids(EOA)
        if self.eoa_id is None or self.eoa_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {EOA} token: not a corrector tokenizer")

    @classmethod
    def from_files(
        cls, train_config: Optional[PathLike], model_file: PathLike, device: str = "cpu", zero_shot: bool = False,
        **decode_opts,
    ) -> "CorrectorGenerator":
        corrector, args = load_corrector(train_config, model_file, device)
        return cls(corrector, load_tokenizer(args.tokenizer_dir), zero_shot=zero_shot, **decode_opts)

    def correct(
        self,
        units: Sequence[Sequence[int]],
        teacher: Optional[Sequence[str]] = None,
        keys: Optional[Sequence[str]] = None,
    ) -> List[Correction]:
        """One Correction per utterance, in input order; `keys` only name utterances in logs."""
        if teacher is not None and len(teacher) != len(units):
            raise ValueError(f"{len(units)} unit sequences but {len(teacher)} teacher transcripts")
        keys = [f"#{i}" for i in range(len(units))] if keys is None else list(keys)
        set_seed(self.options.seed)
        speech = [i for i, u in enumerate(units) if len(u) > 0]

        step1 = self._generate(
            {i: encode_prompt(self.tokenizer, units[i]).input_ids for i in speech}, stop_strings=[STEP_I_STOP]
        )
        preliminaries: Dict[int, str] = {}
        step2_prompts: Dict[int, List[int]] = {}
        for i, ids in step1.items():
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if STEP_I_STOP not in text:
                continue  # ran out of length or stopped at <eoa>/eos: no preliminary transcript
            preliminary = text[: text.index(STEP_I_STOP)]
            try:
                step2_prompts[i] = encode_prompt(self.tokenizer, units[i], preliminary).input_ids
            except ValueError:
                continue  # a prompt marker inside the transcript: the model repeated the template
            preliminaries[i] = preliminary
        step2 = self._generate(step2_prompts, stop_strings=None)

        corrections = []
        for i in range(len(units)):
            fallback_text = normalize_text(teacher[i]) if teacher is not None else ""
            fallback = Correction(fallback_text, fallback_text, FALLBACK_TEACHER)
            if i in step2:
                answer = (f"{PRELIMINARY_HEADER} {preliminaries[i]}{STEP_I_STOP} {CORRECTED_HEADER}"
                          f"{self._answer_text(step2[i])}")
                try:
                    preliminary, corrected = parse_output(answer)
                    corrections.append(Correction(normalize_text(preliminary), normalize_text(corrected), PARSED))
                    continue
                except MalformedOutputError as exc:
                    reason = str(exc)
                preliminary = normalize_text(preliminaries[i])
                if preliminary:
                    fallback = Correction(preliminary, preliminary, FALLBACK_PRELIMINARY)
            else:
                reason = "no units" if i not in step1 else "step I gave no preliminary transcript"
            logger.warning("%s: %s (%s)", keys[i], fallback.status, reason[:200])
            corrections.append(fallback)
        return corrections

    def _answer_text(self, ids: List[int]) -> str:
        """Step II's continuation up to <eoa>, which stays in (it may be a special token)."""
        if self.eoa_id in ids:
            return self.tokenizer.decode(ids[: ids.index(self.eoa_id)], skip_special_tokens=True) + f" {EOA}"
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _generate(self, prompts: Mapping[int, List[int]], stop_strings: Optional[List[str]]) -> Dict[int, List[int]]:
        """New token ids of each prompt, at most max_length - len(prompt), ended by <eoa> or a stop string."""
        order = sorted(prompts, key=lambda i: (len(prompts[i]), i))
        options = self.options
        continuations: Dict[int, List[int]] = {}
        for start in range(0, len(order), options.batch_size):
            batch = order[start : start + options.batch_size]
            budgets = [options.max_length - len(prompts[i]) for i in batch]
            if max(budgets) <= 0:
                continuations.update((i, []) for i in batch)
                continue
            input_ids, attention_mask = self._left_pad([prompts[i] for i in batch])
            config = GenerationConfig(
                max_new_tokens=max(budgets),
                num_beams=1,
                do_sample=options.do_sample,
                eos_token_id=self.eoa_id,
                pad_token_id=self.pad_id,
                use_cache=options.use_cache,
                stop_strings=stop_strings,
                **(dict(top_k=options.top_k, top_p=options.top_p, temperature=options.temperature)
                   if options.do_sample else {}),
            )
            with torch.inference_mode(), self._adapter_context():
                output = self.lm.generate(
                    input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                    tokenizer=self.tokenizer,
                )
            new_tokens = output[:, input_ids.size(1):].tolist()
            for i, ids, budget in zip(batch, new_tokens, budgets):
                continuations[i] = ids[: max(budget, 0)]
            logger.info("generated %d/%d prompts", len(continuations), len(order))
        return continuations

    def _left_pad(self, sequences: List[List[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        length = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, ids in enumerate(sequences):
            input_ids[row, length - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, length - len(ids):] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def _adapter_context(self):
        return self.lm.disable_adapter() if self.zero_shot else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# Kaldi files of an inference directory: text_pt, text_ct, status, fallback.json


def read_units(path: PathLike, keys: Optional[Sequence[str]] = None) -> Dict[str, List[int]]:
    """`key 12 45 7` lines (an empty line after the key: no speech), sorted, only `keys` if given."""
    entries = read_text(path)
    if keys is not None:
        missing = [key for key in keys if key not in entries]
        if missing:
            raise DataDirError(f"{path}: {len(missing)} requested keys are missing, e.g. '{missing[0]}'")
        entries = {key: entries[key] for key in keys}
    units = {}
    for key, value in sorted(entries.items()):
        try:
            units[key] = [int(unit) for unit in value.split()]
        except ValueError:
            raise DataDirError(f"{path}: key '{key}': units must be integers, got {value[:100]!r}") from None
    return units


def fallback_counts(statuses: Mapping[str, str]) -> Dict[str, int]:
    counts = Counter(statuses.values())
    return {status: counts.get(status, 0) for status in STATUSES}


def write_corrections(output_dir: PathLike, corrections: Mapping[str, Correction]) -> Dict[str, int]:
    """text_pt, text_ct, status (`key parsed|fallback_…`) and fallback.json (counts per status)."""
    output_dir = Path(output_dir)
    write_kv(output_dir / PRELIMINARY_FILE, {key: c.preliminary for key, c in corrections.items()})
    write_kv(output_dir / CORRECTED_FILE, {key: c.corrected for key, c in corrections.items()})
    statuses = {key: c.status for key, c in corrections.items()}
    write_kv(output_dir / STATUS_FILE, statuses)
    counts = fallback_counts(statuses)
    _write_json(output_dir / FALLBACK_FILE, counts)
    return counts


def read_corrections(output_dir: PathLike) -> Dict[str, Correction]:
    output_dir = Path(output_dir)
    preliminary = read_text(output_dir / PRELIMINARY_FILE)
    corrected = read_text(output_dir / CORRECTED_FILE)
    statuses = read_text(output_dir / STATUS_FILE)
    for name, texts in ((PRELIMINARY_FILE, preliminary), (CORRECTED_FILE, corrected)):
        if set(texts) != set(statuses):
            raise DataDirError(f"{output_dir / name}: keys differ from {output_dir / STATUS_FILE}")
    bad = [key for key, status in statuses.items() if status not in STATUSES]
    if bad:
        raise DataDirError(f"{output_dir / STATUS_FILE}: key '{bad[0]}' has status '{statuses[bad[0]]}'")
    return {key: Correction(preliminary[key], corrected[key], statuses[key]) for key in statuses}


def _write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def correct_units_file(
    generator: CorrectorGenerator,
    units_file: PathLike,
    output_dir: PathLike,
    teacher_text: Optional[PathLike] = None,
    keys: Optional[Sequence[str]] = None,
) -> Dict[str, int]:
    """Decode a units file (one JOB's keys if given) into an inference directory; fallback counts."""
    units = read_units(units_file, keys)
    teacher = None
    if teacher_text is not None:
        texts = read_text(teacher_text)
        missing = [key for key in units if key not in texts]
        if missing:
            raise DataDirError(f"{teacher_text}: no transcript for key '{missing[0]}' ({len(missing)} missing)")
        teacher = [texts[key] for key in units]
    corrections = generator.correct(list(units.values()), teacher, keys=list(units))
    counts = write_corrections(output_dir, dict(zip(units, corrections)))
    logger.info("%s: %s", output_dir, counts)
    return counts
