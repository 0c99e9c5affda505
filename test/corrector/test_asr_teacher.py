"""ASR teacher: both Whisper backends, and the scp-to-text I/O (with a length-reporting double)."""
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from whisper.model import ModelDimensions, Whisper
from whisper.tokenizer import get_tokenizer

from sepalm_espnet.bin.asr_teacher import main as asr_teacher_main
from sepalm_espnet.corrector.asr_teacher import (
    AsrTeacher,
    Transcript,
    build_asr_teacher,
    count_length_limited,
    transcribe_references,
    transcribe_scp,
)
from sepalm_espnet.corrector.text_norm import normalize_text, wer
from sepalm_espnet.data.kaldi_dir import DataDirError, read_text, write_kv

FS = 16000
WHISPER_BASE = Path(
    os.environ.get("SEPALM_WHISPER_BASE", Path(__file__).parents[2] / "tools/models/whisper-base-ct2")
)
SENTENCE = "the quick brown fox jumps over the lazy dog"


class LengthTeacher(AsrTeacher):
    """Says how many samples it heard, so a test can tell which audio ended up under which key."""

    def __init__(self):
        self.batch_sizes = []

    def transcribe(self, audios):
        self.batch_sizes.append(len(audios))
        return [Transcript(f"utterance of {len(audio)} samples.") for audio in audios]


def heard(n_samples: int) -> str:
    return f"UTTERANCE OF {n_samples} SAMPLES"


def write_wavs(directory: Path, lengths: dict, fs: int = FS, channels: int = 1) -> Path:
    """A wav.scp (written unsorted) of noise files of the given lengths."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for key, n_samples in lengths.items():
        path = directory / f"{key}.wav"
        shape = (n_samples, channels) if channels > 1 else (n_samples,)
        sf.write(path, 0.1 * rng.standard_normal(shape), fs)
        lines.append(f"{key} {path}\n")
    scp = directory / f"{directory.name}.scp"
    scp.write_text("".join(reversed(lines)))
    return scp


@pytest.fixture(scope="module")
def tiny_whisper_checkpoint(tmp_path_factory):
    """A random Whisper in openai-whisper's .pt format, weights large enough that text follows audio."""
    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=32, n_text_state=32, n_text_head=2, n_text_layer=1)
    model = Whisper(dims)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.ndim >= 2:
                weight.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("whisper") / "tiny.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
    return path


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match=r"choose from \['faster_whisper', 'whisper'\]"):
        build_asr_teacher("wav2vec", "model")


def test_openai_whisper_batch_equals_one_at_a_time(tiny_whisper_checkpoint):
    teacher = build_asr_teacher("whisper", str(tiny_whisper_checkpoint))
    rng = np.random.default_rng(1)
    audios = [
        (gain * rng.standard_normal(n)).astype(np.float32)
        for n, gain in ((16000, 0.1), (40000, 0.5), (8000, 1.0))
    ]
    batched = [t.text for t in teacher.transcribe(audios)]
    assert all(isinstance(text, str) for text in batched)
    assert len(set(batched)) == 3, "the test model should transcribe different noises differently"
    assert batched == [teacher.transcribe([audio])[0].text for audio in audios]


def test_openai_whisper_joins_windows_of_long_input(tiny_whisper_checkpoint):
    teacher = build_asr_teacher("whisper", str(tiny_whisper_checkpoint))
    long_audio = (0.1 * np.random.default_rng(2).standard_normal(31 * FS)).astype(np.float32)
    halves = [t.text for t in teacher.transcribe(list(np.array_split(long_audio, 2)))]
    assert teacher.transcribe([long_audio])[0].text == " ".join(text for text in halves if text)


def test_openai_whisper_marks_windows_decoded_to_the_token_limit(tiny_whisper_checkpoint, tmp_path):
    # The random model never emits its end token: every window loops to the limit, as greedy
    # Whisper did on 17 of 640 separated estimates of the mini recipe. A copy whose output layer
    # always prefers the end token stops after one token.
    noise = [(0.1 * np.random.default_rng(3).standard_normal(n)).astype(np.float32) for n in (16000, 31 * FS)]
    looping = build_asr_teacher("whisper", str(tiny_whisper_checkpoint), max_tokens=5)
    assert [t.length_limited for t in looping.transcribe(noise)] == [True, True]
    checkpoint = torch.load(tiny_whisper_checkpoint, weights_only=True)
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    eot = get_tokenizer(multilingual=True).eot
    with torch.no_grad():
        model.decoder.ln.weight.zero_()
        model.decoder.ln.bias.copy_(10 * model.decoder.token_embedding.weight[eot])
    torch.save({"dims": checkpoint["dims"], "model_state_dict": model.state_dict()}, tmp_path / "eot.pt")
    stopping = build_asr_teacher("whisper", str(tmp_path / "eot.pt"), max_tokens=5)
    transcripts = stopping.transcribe(noise)
    assert [t.length_limited for t in transcripts] == [False, False] and all(t.text for t in transcripts)


def test_openai_whisper_limit_never_exceeds_half_the_text_context(tiny_whisper_checkpoint, caplog):
    with caplog.at_level(logging.WARNING):
        teacher = build_asr_teacher("whisper", str(tiny_whisper_checkpoint))
    assert teacher.max_tokens == 16 and teacher.options.sample_len == 16  # n_text_ctx 32
    assert "max_tokens 224 lowered to the model's 16" in caplog.text


def test_status_of_every_transcript_is_written_beside_its_text(tmp_path):
    class LoopsOnLongInput(AsrTeacher):
        def transcribe(self, audios):
            return [Transcript("words " * 9, length_limited=len(audio) > 1500) for audio in audios]

    scp = write_wavs(tmp_path / "wavs", {"a": 1000, "b": 2000, "c": 1200})
    transcribe_scp(LoopsOnLongInput(), scp, tmp_path / "text")
    assert read_text(tmp_path / "text.asr_status") == {"a": "complete", "b": "length_limit", "c": "complete"}
    assert count_length_limited(tmp_path / "text") == 1
    assert count_length_limited(tmp_path / "other") is None  # a text without statuses
    write_kv(tmp_path / "bad.asr_status", {"a": "truncated"})
    with pytest.raises(DataDirError, match="bad.asr_status: unknown status 'truncated'"):
        count_length_limited(tmp_path / "bad")


@pytest.mark.skipif(
    not (WHISPER_BASE / "model.bin").is_file(), reason=f"no Whisper base CTranslate2 model at {WHISPER_BASE}"
)
@pytest.mark.skipif(shutil.which("flite") is None, reason="flite (text to speech) is not installed")
def test_faster_whisper_transcribes_synthetic_speech(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wav = tmp_path / "fox.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", SENTENCE, "-o", str(wav)], check=True)
    speech, _ = librosa.load(wav, sr=FS)
    teacher = build_asr_teacher("faster_whisper", str(WHISPER_BASE))
    [transcript] = teacher.transcribe([speech])
    error_rate, n_words, _ = wer({"fox": SENTENCE}, {"fox": transcript.text})
    assert n_words == 9 and error_rate < 0.5 and not transcript.length_limited, transcript
    [cut] = build_asr_teacher("faster_whisper", str(WHISPER_BASE), max_tokens=3).transcribe([speech])
    assert cut.length_limited and len(cut.text.split()) < 5, cut


def test_faster_whisper_decodes_greedily_in_english_one_clip_at_a_time(monkeypatch):
    import faster_whisper

    calls = []

    class FakeWhisperModel:
        def __init__(self, model, device, compute_type, cpu_threads):
            self.init = dict(model=model, device=device, compute_type=compute_type, cpu_threads=cpu_threads)

        def transcribe(self, audio, **options):
            calls.append((len(audio), options))
            segment = type("Segment", (), {"text": f" {len(audio)} samples.", "tokens": [1] * (100 if len(audio) < FS else 224)})
            return iter([segment]), None

    monkeypatch.setattr(faster_whisper, "WhisperModel", FakeWhisperModel)
    teacher = build_asr_teacher("faster_whisper", "model_dir")
    assert teacher.model.init == dict(model="model_dir", device="cpu", compute_type="int8", cpu_threads=0)
    assert teacher.transcribe([np.zeros(1600, np.float32), np.zeros(40 * FS, np.float32)]) == [
        Transcript("1600 samples.", length_limited=False),  # 100 tokens
        Transcript(f"{40 * FS} samples.", length_limited=True),  # 224 tokens: the limit
    ]
    assert [n for n, _ in calls] == [1600, 40 * FS]
    for _, options in calls:
        assert options == dict(language="en", task="transcribe", beam_size=1, best_of=1, temperature=0.0,
                               condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
                               no_speech_threshold=None, max_new_tokens=224)


def test_module_import_leaves_backends_and_scoring_unloaded():
    """A stage 5 job imports only the backend it builds (faster-whisper, or openai-whisper's
    model code) and not the separation metrics (fast_bss_eval, pystoi) at all."""
    probe = ("import sys, sepalm_espnet.corrector.asr_teacher; "
             "print(sorted(m for m in ('faster_whisper', 'sepalm_espnet.metrics.separation', 'fast_bss_eval') "
             "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parents[2])
    assert result.stdout.strip() == "[]"


def test_transcribe_scp_writes_sorted_normalized_text_in_batches(tmp_path):
    scp = write_wavs(tmp_path, {"c": 1600, "a": 3200, "e": 800, "b": 4800, "d": 2400})
    teacher = LengthTeacher()
    transcribe_scp(teacher, scp, tmp_path / "text", batch_size=2)
    assert teacher.batch_sizes == [2, 2, 1]
    assert (tmp_path / "text").read_text().splitlines() == [
        f"a {heard(3200)}", f"b {heard(4800)}", f"c {heard(1600)}", f"d {heard(2400)}", f"e {heard(800)}"
    ]


def test_transcribe_scp_only_the_jobs_keys(tmp_path):
    scp = write_wavs(tmp_path, {"a": 1600, "b": 3200, "c": 800})
    write_kv(tmp_path / "keys.1.scp", {"c": str(tmp_path / "c.wav"), "a": str(tmp_path / "a.wav")})
    transcribe_scp(LengthTeacher(), scp, tmp_path / "text.1", key_file=tmp_path / "keys.1.scp")
    assert read_text(tmp_path / "text.1") == {"a": heard(1600), "c": heard(800)}

    write_kv(tmp_path / "keys.2.scp", {"z": "x"})
    with pytest.raises(DataDirError, match="requested keys are missing, e.g. 'z'"):
        transcribe_scp(LengthTeacher(), scp, tmp_path / "text.2", key_file=tmp_path / "keys.2.scp")
    assert not (tmp_path / "text.2").exists()


def test_resamples_and_downmixes_to_16k_mono_with_log_lines(tmp_path, caplog):
    scp = write_wavs(tmp_path, {"narrowband": 8000}, fs=8000, channels=2)
    with caplog.at_level(logging.INFO):
        transcribe_scp(LengthTeacher(), scp, tmp_path / "text")
    assert read_text(tmp_path / "text") == {"narrowband": heard(16000)}
    assert "resampling 8000 Hz to 16000 Hz" in caplog.text
    assert "downmixing 2 channels to mono" in caplog.text


@pytest.fixture
def two_speaker_refs(tmp_path):
    """Reference scps whose lengths identify the talker: spk1 of m1 has 1000 samples, etc."""
    spk1 = write_wavs(tmp_path / "spk1", {"m1": 1000, "m2": 3000})
    spk2 = write_wavs(tmp_path / "spk2", {"m1": 2000, "m2": 4000})
    return spk1, spk2


def test_clean_transcripts_follow_the_estimate_order(tmp_path, two_speaker_refs):
    # m1: estimate 2 matched reference 1 (swapped); m2: identity
    (tmp_path / "permutation").write_text("m1 2 1\nm2 1 2\n")
    outputs = [tmp_path / "text_ct_spk1", tmp_path / "text_ct_spk2"]
    transcribe_references(LengthTeacher(), two_speaker_refs, outputs, tmp_path / "permutation")
    assert read_text(outputs[0]) == {"m1": heard(2000), "m2": heard(3000)}
    assert read_text(outputs[1]) == {"m1": heard(1000), "m2": heard(4000)}


@pytest.mark.parametrize(
    "line, problem",
    [("m1 1 1", "expected a permutation of 1..2, got 1 1"), ("m0 1 2", "no line for key 'm1'")],
)
def test_bad_permutation_is_refused(tmp_path, two_speaker_refs, line, problem):
    (tmp_path / "permutation").write_text(f"{line}\nm2 1 2\n")
    outputs = [tmp_path / "text_ct_spk1", tmp_path / "text_ct_spk2"]
    with pytest.raises(DataDirError, match=problem):
        transcribe_references(LengthTeacher(), two_speaker_refs, outputs, tmp_path / "permutation")
    assert not outputs[0].exists()


def test_cli_writes_one_text_per_scp_of_the_jobs_keys(tmp_path, two_speaker_refs, tiny_whisper_checkpoint):
    spk1, spk2 = two_speaker_refs
    write_kv(tmp_path / "keys.1.scp", {"m2": "x"})
    asr_teacher_main(["--backend", "whisper", "--model", str(tiny_whisper_checkpoint),
                      "--wav_scp", str(spk1), str(spk2), "--output_names", "text_pt", "text_ct",
                      "--key_file", str(tmp_path / "keys.1.scp"), "--output_dir", str(tmp_path / "out")])
    teacher = build_asr_teacher("whisper", str(tiny_whisper_checkpoint))
    for scp, name in ((spk1, "text_pt"), (spk2, "text_ct")):
        audio, _ = sf.read(read_text(scp)["m2"], dtype="float32")
        assert read_text(tmp_path / "out" / name) == {"m2": normalize_text(teacher.transcribe([audio])[0].text)}
