"""The corrector's tokenizer: a LLaMA-family text tokenizer plus SpeechGPT's unit and turn tokens.

SpeechGPT-7B-cm's tokenizer already holds `<0>`…`<999>`, `<sosp>`, `<eosp>` and `<eoh>`;
`add_unit_tokens` adds whatever is missing (plain added tokens, as SpeechGPT added them, so
they decode like text), always in the same order, so a tokenizer extended twice the same way
has the same ids. The corrector resizes its LM's embeddings to `len(tokenizer)`.

The mini recipe has no pretrained LM: `train_sentencepiece_tokenizer` trains a small BPE
SentencePiece model on its transcripts and the prompt's fixed text. transformers 5 builds
LlamaTokenizer as a BPE tokenizer converted from `tokenizer.model` (and silently ignores
`LlamaTokenizer(vocab_file=...)`), so the model is trained as BPE, which converts exactly,
and loaded through `from_pretrained` on a directory.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Iterable, List, Union

import sentencepiece as spm
from transformers import AutoTokenizer, LlamaTokenizer, PreTrainedTokenizerBase

from sepalm_espnet.corrector.prompt import EOA, EOH, EOSP, SOSP, build_prompt, unit_token

PathLike = Union[str, Path]


def corrector_tokens(n_units: int) -> List[str]:
    """Units first, then the speech and turn markers: the order `add_unit_tokens` adds them in."""
    return [unit_token(unit) for unit in range(n_units)] + [SOSP, EOSP, EOH, EOA]


def add_unit_tokens(tokenizer: PreTrainedTokenizerBase, n_units: int) -> int:
    """Add the unit and marker tokens the tokenizer lacks; returns how many were added."""
    vocab = tokenizer.get_vocab()
    return tokenizer.add_tokens([token for token in corrector_tokens(n_units) if token not in vocab])


def count_unit_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """n such that `<0>`…`<n-1>` are all single tokens: the largest unit a prompt can hold, plus one."""
    vocab = tokenizer.get_vocab()
    n_units = 0
    while unit_token(n_units) in vocab:
        n_units += 1
    return n_units


def check_corrector_tokenizer(tokenizer: PreTrainedTokenizerBase) -> int:
    """The number of unit tokens, after making sure the markers exist (else prompts silently split)."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in (SOSP, EOSP, EOH, EOA) if token not in vocab]
    n_units = count_unit_tokens(tokenizer)
    if missing or n_units == 0:
        raise ValueError(
            f"tokenizer lacks the corrector's tokens ({missing or 'unit tokens <0>...'}): "
            "prepare it with `python -m sepalm_espnet.bin.train_tokenizer`"
        )
    return n_units


def padding_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """LLaMA tokenizers have no pad token; padded positions are masked, so EOS serves."""
    return tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id


def load_tokenizer(path: PathLike) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(path))


def prompt_text() -> str:
    """The template's fixed words, for a tokenizer to learn them as few pieces."""
    return re.sub(r"<[^>]*>", "", build_prompt([], "", ""))


def train_sentencepiece_tokenizer(texts: Iterable[str], vocab_size: int = 500) -> LlamaTokenizer:
    """A LLaMA-style tokenizer (BPE, byte fallback, digits split, <unk> <s> </s> = 0 1 2) for a mini LM.

    `vocab_size` is an upper bound: a tiny corpus yields fewer pieces.
    """
    sentences = [line for line in (text.strip() for text in texts) if line] + [prompt_text()]
    with tempfile.TemporaryDirectory() as tmp:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_prefix=str(Path(tmp) / "tokenizer"),
            model_type="bpe",
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="identity",
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            minloglevel=2,
        )
        return LlamaTokenizer.from_pretrained(tmp)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, output_dir: PathLike) -> None:
    """save_pretrained into a temporary directory moved into place: never a half-written tokenizer."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=f".{output_dir.name}.") as tmp:
        staged, replaced = Path(tmp) / "new", Path(tmp) / "old"
        tokenizer.save_pretrained(str(staged))
        if output_dir.exists():
            output_dir.rename(replaced)
        staged.rename(output_dir)
