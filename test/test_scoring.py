"""Stage 14's scoring driver on a tiny flat layout: 2 mixtures x 2 speakers of 0.5 s."""
import json
import logging
import zipfile

import numpy as np
import pytest
import yaml

from sepalm_espnet.data.audio import write_audio
from sepalm_espnet.corrector.asr_teacher import Transcript
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv
from sepalm_espnet.data.speakers import flatten
from sepalm_espnet import scoring
from sepalm_espnet.metrics.rtf import RtfMeter
from sepalm_espnet.scoring import ScoringOptions, score_systems
from sepalm_espnet.metrics.separation import read_scores, score_dirs
from sepalm_espnet.metrics.systems import append_system

FS = 16000
UTTS = ("m1", "m2")
PERMUTATION = {"m1": (1, 0), "m2": (0, 1)}  # 0-based estimate matched to each reference
GT = {("m1", 0): "the cat sat", ("m1", 1): "a dog ran far", ("m2", 0): "green trees grow", ("m2", 1): "red blue"}
SEP_DECODE = "exp/sep_x/decode/test"
COR_DECODE = "exp/cor_x/decode_default/test"
ALI_DECODE = "exp/ali_x/decode_y/test"
SEP = ("SepFormer (x)", "separator_only", "exp/sep_x/decode/{set}/wav.scp")
COR = ("Corrector x: corrected", "transcript", "exp/cor_x/decode_default/{set}/text_ct")
ALI = ("SepALM (x)", "sepalm", "exp/ali_x/decode_y/{set}/speech.scp")
ORACLE = ("Codec resynthesis of s (oracle, x)", "oracle", "exp/sep_x/decode/{set}/codec_x_resynthesis/speech.scp")


def voice(f0, seed):
    t = np.arange(FS // 2) / FS
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t + seed)
    noise = 1e-3 * np.random.default_rng(seed).standard_normal(len(t))
    return 0.1 * envelope * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)) + noise


def wav(root, name, signal):
    path = root / "wav" / f"{name}.wav"
    write_audio(path, signal, FS)
    return str(path)


def speech_scp(root, name, estimates, seed):
    """A flat scp (estimate order) of the estimates plus noise at one level."""
    rng = np.random.default_rng(seed)
    return flatten([{utt: wav(root, f"{name}_{utt}_{n}", estimates[utt][n] + 0.01 * rng.standard_normal(FS // 2))
                     for utt in UTTS} for n in range(2)])


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """The flat layout of stages 2-13 under tmp_path (cwd): separator and aligned outputs, teacher
    and corrector transcripts (one corrector fallback), manifest without the aligned system."""
    monkeypatch.chdir(tmp_path)
    sources = {utt: [voice(140 + 60 * i, i), voice(230 + 40 * i, 10 + i)] for i, utt in enumerate(UTTS)}
    mixtures = {utt: wav(tmp_path, f"mix_{utt}", sum(sources[utt])) for utt in UTTS}
    refs = [{utt: wav(tmp_path, f"ref_{utt}_{k}", sources[utt][k]) for utt in UTTS} for k in range(2)]
    write_kv("dump/raw/test/wav.scp", mixtures)
    for k in range(2):
        write_kv(f"dump/raw/test/spk{k + 1}.scp", refs[k])
    # estimate n is the source of the reference matched to it (estimate order)
    matched = {utt: [None, None] for utt in UTTS}
    for utt, perm in PERMUTATION.items():
        for k, n in enumerate(perm):
            matched[utt][n] = k
    estimates = {utt: [sources[utt][matched[utt][n]] for n in range(2)] for utt in UTTS}
    flat_est = speech_scp(tmp_path, "est", estimates, 0)
    write_kv(f"{SEP_DECODE}/wav.scp", flat_est)
    for n in range(2):
        write_kv(f"{SEP_DECODE}/spk{n + 1}.scp", {utt: flat_est[f"{utt}_spk{n + 1}"] for utt in UTTS})
    write_kv(f"{SEP_DECODE}/ref.scp", flatten([{u: refs[matched[u][n]][u] for u in UTTS} for n in range(2)]))
    write_kv(f"{SEP_DECODE}/text", flatten([{u: GT[u, matched[u][n]] for u in UTTS} for n in range(2)]))
    write_kv(f"{SEP_DECODE}/permutation", {u: " ".join(str(n + 1) for n in perm) for u, perm in PERMUTATION.items()})
    teacher = {f"{u}_spk{n + 1}": GT[u, matched[u][n]] for u in UTTS for n in range(2)}
    teacher["m2_spk2"] = "red glue"  # the teacher misheard one word of the clean reference
    write_kv(f"{SEP_DECODE}/teacher/text_ct", teacher)
    corrected = dict(teacher, m1_spk1="a dog ran")  # one deletion against the teacher
    write_kv(f"{COR_DECODE}/text_ct", corrected)
    write_kv(f"{COR_DECODE}/status", {key: "fallback_teacher" if key == "m2_spk1" else "parsed" for key in corrected})
    write_kv(f"{ALI_DECODE}/speech.scp", speech_scp(tmp_path, "ali", estimates, 1))
    for system in (SEP, COR, ALI):
        append_system("exp/systems.tsv", *system)
    (tmp_path / ALI_DECODE / "speech.scp").rename(tmp_path / ALI_DECODE / "speech.scp.later")  # stage 13 not run yet
    return tmp_path


def options(**overrides):
    values = dict(manifest="exp/systems.tsv", test_sets=("test",), output="exp/RESULTS.md",
                  metadata=("date=2025-01-31",))
    values.update(overrides)
    return ScoringOptions(**values)


def table_rows(path):
    lines = path.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| system"))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in lines if line.startswith("| ") and not line.startswith("| system")}
    return [c.strip() for c in header.strip("|").split("|")[1:]], rows


def test_scores_speech_and_transcript_systems_then_skips_until_an_input_changes(layout, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    score_systems(options())
    score_dir = layout / SEP_DECODE / "score"
    assert sorted(p.name for p in score_dir.iterdir()) == [".done", "metrics.tsv", "permutation", "summary.json"]
    assert read_kv(score_dir / "permutation") == {"m1": "2 1", "m2": "1 2"}  # the stored match, recorded
    # The flat ref.scp gives what scoring the per-speaker dirs under the stored permutation gives.
    expected = score_dirs(layout / "dump/raw/test", layout / SEP_DECODE, permutations=PERMUTATION)
    assert {s.key: s.metrics for s in read_scores(score_dir)} == {
        s.key: {name: pytest.approx(value, abs=1e-4, nan_ok=True) for name, value in s.metrics.items()}
        for s in expected}
    summary = json.loads((score_dir / "summary.json").read_text())
    assert summary["n_utterances"] == 2 and summary["si_snri"] > 5

    wer = json.loads((layout / COR_DECODE / "score/text_ct/wer_summary.json").read_text())
    assert wer["wer_teacher"] == pytest.approx(100 / 12) and wer["wer_teacher_deletions"] == 1
    assert wer["wer_gt"] == pytest.approx(200 / 12)  # also the teacher's "glue"
    assert (wer["n_utterances"], wer["n_transcripts"], wer["n_fallbacks"], wer["fallback_rate"]) == (2, 4, 1, 25.0)
    assert wer["statuses"] == {"fallback_teacher": 1, "parsed": 3}

    results = layout / "exp/RESULTS.md"
    header, rows = table_rows(results)
    assert header == ["SI-SNRi (dB)", "SDRi (dB)", "PESQi", "ESTOIi", "N", "WER (teacher, %)", "WER (GT, %)",
                      "fallbacks", "fallback rate (%)"]
    assert float(rows["SepFormer (x)"][0]) > 5 and rows["SepFormer (x)"][4] == "2"
    assert rows["SepFormer (x)"][5:] == ["-"] * 4  # no ASR model: no speech WER
    assert rows["Corrector x: corrected"] == ["-"] * 4 + ["2", "8.33", "16.67", "1", "25.0"]
    assert rows["SepALM (x)"] == ["not scored"] + ["-"] * 8
    text = results.read_text()
    assert f"- SepALM (x): not scored ({ALI_DECODE}/speech.scp not found)" in text
    assert text.startswith("# RESULTS\n\n- date: 2025-01-31\n- scoring: WER of output speech: none; SIM: none; RTF:")
    assert f"SepALM (x): {ALI_DECODE}/speech.scp not found: not scored on test" in caplog.messages
    assert "![SI-SNRi per system](images/RESULTS_si_snri.png)" in text  # the bar chart beside it
    assert (layout / "exp/images/RESULTS_si_snri.png").stat().st_size > 1000

    # A rerun computes nothing and says so in the words the recipe's test looks for.
    caplog.clear()
    done = (score_dir / ".done").read_text()
    with monkeypatch.context() as patch:
        patch.setattr(scoring, "score_utterance", lambda *a, **k: pytest.fail("scored again"))
        patch.setattr(scoring, "corpus_wer", lambda *a, **k: pytest.fail("WER again"))
        score_systems(options())
    assert f"{SEP_DECODE}/score is up to date, skipped" in caplog.messages
    assert f"{COR_DECODE}/score/text_ct is up to date, skipped" in caplog.messages
    assert (score_dir / ".done").read_text() == done

    # A changed scp (a noisier estimate) and a changed status file are scored again.
    caplog.clear()
    flat = read_kv(layout / SEP_DECODE / "wav.scp")
    flat["m1_spk1"] = wav(layout, "noisy", 0.1 * np.random.default_rng(5).standard_normal(FS // 2))
    write_kv(layout / SEP_DECODE / "wav.scp", flat)
    write_kv(layout / COR_DECODE / "status", {key: "parsed" for key in read_kv(layout / COR_DECODE / "status")})
    score_systems(options())
    assert any(m.startswith("score SepFormer (x) (separator_only) on test") for m in caplog.messages)
    assert any(m.startswith("score Corrector x: corrected (transcript) on test") for m in caplog.messages)
    assert json.loads((score_dir / "summary.json").read_text())["si_snri"] < summary["si_snri"] - 1
    assert table_rows(results)[1]["Corrector x: corrected"][-2:] == ["0", "0.0"]


def test_scoring_in_processes_gives_the_same_files_and_table(layout, tmp_path_factory):
    """--nj 2 spawns fresh processes (no test patch reaches them): same scores, table and skips."""
    (layout / ALI_DECODE / "speech.scp.later").rename(layout / ALI_DECODE / "speech.scp")
    score_systems(options())
    sequential = {p.relative_to(layout): p.read_bytes() for p in layout.glob("exp/**/score/**/*") if p.is_file()}
    table = (layout / "exp/RESULTS.md").read_text()
    for path in sequential:
        (layout / path).unlink()
    score_systems(options(nj=2))
    parallel = {p.relative_to(layout): p.read_bytes() for p in layout.glob("exp/**/score/**/*") if p.is_file()}
    assert sorted(parallel) == sorted(sequential) and len(parallel) >= 10
    assert {p: v for p, v in parallel.items() if p.name != ".done"} == {
        p: v for p, v in sequential.items() if p.name != ".done"}
    assert (layout / "exp/RESULTS.md").read_text() == table
    assert "SepALM (x)" in table and "not scored" not in table


class FakeTeacher:
    def __init__(self):
        self.calls = 0

    def transcribe(self, audios):
        self.calls += 1
        # The first of every call loops to the decoding's token limit.
        return [Transcript("The cat, sat!", length_limited=i == 0) for i in range(len(audios))]


class FakeEncoder:
    sample_rate = FS

    def similarity(self, a, b):
        return 0.5


def fake_archive(path, synthesizer_digest):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.yaml", yaml.safe_dump({"created": str(synthesizer_digest),
                                                 "checksums": {"README.md": "changes", "synthesizer/model.safetensors":
                                                           synthesizer_digest}}))


def test_models_load_once_and_rtf_is_measured_once_per_mode(layout, caplog, monkeypatch):
    (layout / ALI_DECODE / "speech.scp.later").rename(layout / ALI_DECODE / "speech.scp")
    # An oracle row (speech made from the references) is scored like the others and never timed.
    write_kv(ORACLE[2].replace("{set}", "test"), read_kv(layout / ALI_DECODE / "speech.scp"))
    append_system("exp/systems.tsv", *ORACLE)
    built = {"teacher": [], "encoder": 0, "rtf_system": 0, "measured": []}

    def build_teacher(backend, model, device):
        built["teacher"].append((backend, model, device))
        return FakeTeacher()

    def build_encoder(backend, model, device):
        built["encoder"] += 1
        return FakeEncoder()

    def load_rtf_system(archive, device, corrector_config):
        built["rtf_system"] += 1
        return object()

    def measure_mode(model, mode, wav_scp, utterances, seconds):
        built["measured"].append((mode, str(wav_scp), utterances, seconds))
        meter = RtfMeter()
        meter.add_input(utterances * seconds)
        meter.add("separator", utterances * seconds, 0.25 if mode == "separator_only" else 2.0)
        return meter

    monkeypatch.setattr(scoring, "build_asr_teacher", build_teacher)
    monkeypatch.setattr(scoring, "build_speaker_encoder", build_encoder)
    monkeypatch.setattr(scoring, "load_rtf_system", load_rtf_system)
    monkeypatch.setattr(scoring, "measure_mode", measure_mode)
    fake_archive(layout / "sepalm.zip", "abc")
    run = options(asr_backend="whisper", asr_model="base", sim_backend="resemblyzer", rtf_archive="sepalm.zip",
                  rtf_utterances=1)
    score_systems(run)
    assert built["teacher"] == [("whisper", "base", "cpu")] and built["encoder"] == 1 and built["rtf_system"] == 1
    assert built["measured"] == [("separator_only", "dump/raw/test/wav.scp", 1, 5.0),
                                 ("sepalm", "dump/raw/test/wav.scp", 1, 5.0)]
    for decode in (SEP_DECODE, ALI_DECODE):
        speech = json.loads((layout / decode / "score/speech_summary.json").read_text())
        # Every estimate heard as "the cat sat": right for one of 4 speakers, 10 errors in 12 words.
        assert (speech["wer_teacher_errors"], speech["wer_teacher_words"], speech["wer_gt_errors"]) == (10, 12, 10)
        assert speech["wer_teacher"] == pytest.approx(1000 / 12)
        assert speech["sim"] == 0.5 and speech["sim_count"] == 4 and speech["n_utterances"] == 2
        assert read_kv(layout / decode / "score/text_hyp")["m2_spk1"] == "THE CAT SAT"  # normalised
        assert speech["n_asr_length_limit"] == 1  # one ASR call per system: 4 estimates
        assert read_kv(layout / decode / "score/text_hyp.asr_status")["m1_spk1"] == "length_limit"
        assert (layout / decode / "score/rtf.json").is_file()
    header, rows = table_rows(layout / "exp/RESULTS.md")
    assert header[-6:] == ["WER (GT, %)", "SIM", "ASR token-limit hits", "fallbacks", "fallback rate (%)", "RTF"]
    assert rows["SepALM (x)"][header.index("ASR token-limit hits")] == "1"
    assert rows["SepFormer (x)"][-1] == "0.050" and rows["SepALM (x)"][-1] == "0.400"
    assert rows["SepALM (x)"][header.index("SIM")] == "0.500"
    assert rows[ORACLE[0]][header.index("SIM")] == "0.500" and rows[ORACLE[0]][-1] in ("", "-")

    # Nothing to compute: no model is loaded; a repacked but identical archive is not timed again.
    caplog.set_level(logging.INFO)
    fake_archive(layout / "sepalm.zip", "abc")
    built.update(teacher=[], encoder=0, rtf_system=0, measured=[])
    score_systems(run)
    assert built == {"teacher": [], "encoder": 0, "rtf_system": 0, "measured": []}
    assert f"{SEP_DECODE}/score/rtf.json is up to date, skipped" in caplog.messages
    assert f"{ALI_DECODE}/score is up to date, skipped" in caplog.messages

    # Another system in the archive: RTF again, scores kept; another SIM backend: scores again.
    fake_archive(layout / "sepalm.zip", "def")
    score_systems(run)
    assert len(built["measured"]) == 2 and built["teacher"] == []
    score_systems(options(asr_backend="whisper", asr_model="base", rtf_archive="sepalm.zip", rtf_utterances=1))
    assert len(built["teacher"]) == 1 and built["encoder"] == 0
    assert not (layout / SEP_DECODE / "score/sim").exists()  # no stale SIM from the earlier run
    assert "SIM" not in table_rows(layout / "exp/RESULTS.md")[0]

    # Rows another system made (a baseline separator, another synthesizer) never get this
    # archive's RTF: only the rows it makes, named by --rtf_systems, are timed.
    fake_archive(layout / "sepalm.zip", "ghi")
    (layout / SEP_DECODE / "score/rtf.json").unlink()
    score_systems(options(asr_backend="whisper", asr_model="base", rtf_archive="sepalm.zip", rtf_utterances=1,
                          rtf_systems=(ALI[0],)))
    assert not (layout / SEP_DECODE / "score/rtf.json").exists()
    assert [mode for mode, *_ in built["measured"][-1:]] == ["sepalm"]
    header, rows = table_rows(layout / "exp/RESULTS.md")
    assert rows["SepFormer (x)"][-1] == "-" and rows["SepALM (x)"][-1] == "0.400"
    with pytest.raises(ValueError, match=r"--rtf_systems: 'SepALM \(y\)' is not a system of exp/systems.tsv"):
        score_systems(options(rtf_archive="sepalm.zip", rtf_systems=("SepALM (y)",), asr_backend=""))


def test_mismatched_inputs_are_errors_naming_the_file(layout):
    original = read_kv(layout / SEP_DECODE / "wav.scp")
    flat = dict(original)
    del flat["m2_spk2"]
    write_kv(layout / SEP_DECODE / "wav.scp", flat)
    with pytest.raises(DataDirError, match=rf"{SEP_DECODE}/wav.scp: 1 keys of {SEP_DECODE}/ref.scp missing, e.g. 'm2_spk2'"):
        score_systems(options())
    write_kv(layout / SEP_DECODE / "wav.scp", dict(flat, m2_spk3=flat["m2_spk1"], m2_spk2=flat["m2_spk1"]))
    with pytest.raises(DataDirError, match="1 keys not in .*ref.scp, e.g. 'm2_spk3'"):
        score_systems(options())
    write_kv(layout / SEP_DECODE / "wav.scp", original)
    write_kv(layout / COR_DECODE / "status", {"m1_spk1": "parsed"})
    with pytest.raises(DataDirError, match=rf"{COR_DECODE}/status: 3 keys of {COR_DECODE}/text_ct missing"):
        score_systems(options(reference_dir="exp/sep_x/decode/{set}"))


@pytest.mark.parametrize("overrides, message", [
    (dict(mixture_dir="dump/raw/test"), r"mixture_dir 'dump/raw/test' has no \{set\}"),
    (dict(asr_backend="whisper"), "asr_backend whisper needs asr_model"),
    (dict(sim_backend="bogus"), "sim_backend 'bogus'"),
    (dict(metadata=("date",)), "metadata 'date': expected KEY=VALUE"),
    (dict(rtf_utterances=0), "rtf_utterances"),
])
def test_options_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        options(**overrides)
    assert options(asr_backend="", sim_backend="none").asr_backend is None


def test_command_line_and_make_results_from_the_manifest(layout):
    from sepalm_espnet.bin import make_results, score_systems as cli

    cli.main(["--manifest", "exp/systems.tsv", "--test_sets", "test", "--asr_backend", "", "--output", "exp/R.md",
              "--metadata", "date=2025-01-31", "separator config=conf/x.yaml"])
    text = (layout / "exp/R.md").read_text()
    assert "- separator config: conf/x.yaml\n" in text and "| SepALM (x) | not scored |" in text
    make_results.main(["--output", "exp/M.md", "--test_sets", "test", "--manifest", "exp/systems.tsv"])
    assert table_rows(layout / "exp/M.md")[1]["SepFormer (x)"] == table_rows(layout / "exp/R.md")[1]["SepFormer (x)"]
    assert "- SepALM (x): not scored (no finished scores in" in (layout / "exp/M.md").read_text()
    with pytest.raises(SystemExit, match="score_systems: nowhere.tsv: file not found"):
        cli.main(["--manifest", "nowhere.tsv"])
    with pytest.raises(SystemExit, match="2 separator_only system dirs"):
        append_system("exp/systems.tsv", "SepFormer (y)", "separator_only", "exp/sep_y/decode/{set}/wav.scp")
        cli.main(["--manifest", "exp/systems.tsv"])


def test_archive_signature_ignores_what_a_repack_changes(tmp_path):
    from sepalm_espnet.scoring import archive_signature

    fake_archive(tmp_path / "a.zip", "abc")
    (tmp_path / "unpacked").mkdir()
    (tmp_path / "unpacked/meta.yaml").write_text(yaml.safe_dump({"checksums": {"synthesizer/model.safetensors": "abc",
                                                                           "RESULTS.md": "x"}}))
    assert archive_signature(tmp_path / "a.zip") == archive_signature(tmp_path / "unpacked") == {
        "files": {"synthesizer/model.safetensors": "abc"}}
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(DataDirError, match="bad.zip: not a packed system with meta.yaml"):
        archive_signature(tmp_path / "bad.zip")


def test_separator_length_cap_hits_are_counted_per_mixture(layout):
    """SLM-SS's stage 4 writes decode_status (each separator call's status per mixture): a
    mixture with any capped call counts once, shown in RESULTS.md even without ASR or SIM."""
    write_kv(f"{SEP_DECODE}/decode_status", {"m1": "ok,capped_no_sc", "m2": "ok"})
    score_systems(options())
    header, rows = table_rows(layout / "exp/RESULTS.md")
    assert rows["SepFormer (x)"][header.index("separator length-cap hits")] == "1"
    summary = json.loads((layout / SEP_DECODE / "score/speech_summary.json").read_text())
    assert summary["n_separator_capped"] == 1 and summary["n_utterances"] == 2
    write_kv(f"{SEP_DECODE}/decode_status", {"m1": "capped_no_eos", "m2": "capped_no_sc"})
    score_systems(options())  # the status file signs the scores: a new one rescores
    header, rows = table_rows(layout / "exp/RESULTS.md")
    assert rows["SepFormer (x)"][header.index("separator length-cap hits")] == "2"
