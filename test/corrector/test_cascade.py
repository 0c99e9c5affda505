"""Cascaded baseline: Whisper N-best (real Whisper base when present) + a tiny LM that learned one answer."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import whisper
from transformers import LlamaConfig, LlamaForCausalLM

from sepalm_espnet.bin.cascade_correct import main as cascade_main
from sepalm_espnet.utils.job_outputs import merge_job_outputs
from sepalm_espnet.corrector.cascade import (
    GerCorrector,
    build_ger_prompt,
    build_nbest_asr,
    correct_nbests,
    nbest_scp,
)
from sepalm_espnet.corrector.generate import FALLBACK_PRELIMINARY, PARSED, STATUSES, Correction
from sepalm_espnet.corrector.text_norm import normalize_text, wer
from sepalm_espnet.corrector.tokenizer import train_sentencepiece_tokenizer
from sepalm_espnet.data.kaldi_dir import read_text, write_kv

FS = 16000
WHISPER_BASE = Path(
    os.environ.get("SEPALM_WHISPER_BASE", Path(__file__).parents[2] / "tools/models/whisper-base-ct2")
)
SENTENCE = "the quick brown fox jumps over the lazy dog"
ANSWER = "the quick brown fox jumped over the lazy dog"  # what the LM learns to answer
needs_whisper_base = pytest.mark.skipif(
    not (WHISPER_BASE / "model.bin").is_file(), reason=f"no Whisper base CTranslate2 model at {WHISPER_BASE}"
)
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite (text to speech) is not installed")


def train_lm(directory: Path, prompt: str, answer: str, steps: int = 60) -> Path:
    """A tiny LLaMA + SentencePiece tokenizer that answers `prompt` with `answer` and a line end."""
    tokenizer = train_sentencepiece_tokenizer([prompt, answer])
    prompt_ids = tokenizer(prompt)["input_ids"]
    answer_ids = tokenizer(answer + "\n", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = torch.tensor([prompt_ids + answer_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids])
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=64))
    optimizer = torch.optim.Adam(lm.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = lm(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lm.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def fox_scp(tmp_path_factory):
    if shutil.which("flite") is None:
        pytest.skip("flite (text to speech) is not installed")
    directory = tmp_path_factory.mktemp("fox")
    subprocess.run(["flite", "-voice", "slt", "-t", SENTENCE, "-o", str(directory / "fox.wav")], check=True)
    write_kv(directory / "wav.scp", {"fox": str(directory / "fox.wav")})
    return directory / "wav.scp"


@needs_whisper_base
@needs_flite
def test_faster_whisper_nbest_corrected_by_the_lm(fox_scp, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asr = build_nbest_asr("faster_whisper", str(WHISPER_BASE), nbest=3)
    nbests = nbest_scp(asr, fox_scp)
    hypotheses = nbests["fox"]
    assert len(hypotheses) == 3 and len(set(hypotheses)) == 3, hypotheses
    assert wer({"fox": SENTENCE}, {"fox": hypotheses[0]})[0] < 0.5, hypotheses

    # The LM is prompted with the normalised hypotheses, as the `nbest` file holds them.
    lm_dir = train_lm(tmp_path / "lm", build_ger_prompt([normalize_text(h) for h in hypotheses]), ANSWER)
    counts = correct_nbests(GerCorrector.from_pretrained(lm_dir), nbests, tmp_path / "out")
    assert counts == {"parsed": 1, "fallback_preliminary": 0, "fallback_teacher": 0}
    assert read_text(tmp_path / "out/text_ct") == {"fox": normalize_text(ANSWER)}
    assert read_text(tmp_path / "out/text_pt") == {"fox": normalize_text(hypotheses[0])}
    assert read_text(tmp_path / "out/nbest") == {"fox": " ||| ".join(normalize_text(h) for h in hypotheses)}

    # Too short an answer budget for a line: the 1-best stands; nothing to correct: nothing asked.
    short = GerCorrector.from_pretrained(lm_dir, max_new_tokens=2).correct([hypotheses, ["", " ", ""]])
    best = normalize_text(hypotheses[0])
    assert short == [Correction(best, best, FALLBACK_PRELIMINARY), Correction("", "", FALLBACK_PRELIMINARY)]


@pytest.fixture(scope="module")
def tiny_whisper_checkpoint(tmp_path_factory):
    """A random Whisper in openai-whisper's .pt format, weights large enough that text follows audio."""
    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1, n_vocab=51865,
        n_text_ctx=16, n_text_state=32, n_text_head=2, n_text_layer=1)
    model = whisper.model.Whisper(dims)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.ndim >= 2:
                weight.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("whisper") / "tiny.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
    return path


def test_cli_openai_whisper_nbest_ranks_like_whisper_decode(tiny_whisper_checkpoint, tmp_path):
    audio = (0.1 * np.random.default_rng(1).standard_normal(FS)).astype(np.float32)
    sf.write(tmp_path / "noise.wav", audio, FS)
    write_kv(tmp_path / "wav.scp", {"noise": str(tmp_path / "noise.wav")})
    lm_dir = train_lm(tmp_path / "lm", build_ger_prompt(["a", "b", "c"]), ANSWER, steps=0)  # random LM
    cascade_main(["--backend", "whisper", "--model", str(tiny_whisper_checkpoint), "--lm", str(lm_dir),
                  "--max_new_tokens", "12", "--wav_scp", str(tmp_path / "wav.scp"),
                  "--output_dir", str(tmp_path / "logdir/output.1")])

    model = whisper.load_model(str(tiny_whisper_checkpoint))
    best = whisper.decode(model, whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)),
                          whisper.DecodingOptions(language="en", beam_size=3, without_timestamps=True, fp16=False))
    nbest = read_text(tmp_path / "logdir/output.1/nbest")["noise"].split(" ||| ")
    assert len(nbest) == 3 and nbest[0] == normalize_text(best.text)
    assert read_text(tmp_path / "logdir/output.1/text_pt") == {"noise": nbest[0]}
    [status] = read_text(tmp_path / "logdir/output.1/status").values()
    assert status in STATUSES
    counts = json.loads((tmp_path / "logdir/output.1/fallback.json").read_text())
    assert sum(counts.values()) == 1 and counts[status] == 1

    write_kv(tmp_path / "logdir/keys.1.scp", {"noise": ""})
    merge_job_outputs(tmp_path, 1)  # the recipe's merger joins the nbest lists too
    assert read_text(tmp_path / "nbest") == read_text(tmp_path / "logdir/output.1/nbest")
    assert status in (PARSED, FALLBACK_PRELIMINARY)


def test_cli_nbest_only_writes_the_training_nbests_without_an_lm(tiny_whisper_checkpoint, tmp_path):
    """Table 3 (e)'s training data: the N-best lists alone, as a full cascade run writes them."""
    audio = (0.1 * np.random.default_rng(1).standard_normal(FS)).astype(np.float32)
    sf.write(tmp_path / "noise.wav", audio, FS)
    write_kv(tmp_path / "wav.scp", {"noise": str(tmp_path / "noise.wav")})
    asr = ["--backend", "whisper", "--model", str(tiny_whisper_checkpoint), "--wav_scp", str(tmp_path / "wav.scp")]
    cascade_main([*asr, "--nbest_only", "true", "--output_dir", str(tmp_path / "nbest_only")])
    assert sorted(path.name for path in (tmp_path / "nbest_only").iterdir()) == ["nbest"]

    [hypotheses] = build_nbest_asr("whisper", str(tiny_whisper_checkpoint), nbest=3).transcribe_nbest([audio])
    assert read_text(tmp_path / "nbest_only/nbest")["noise"].split(" ||| ") == [normalize_text(h) for h in hypotheses]
