"""sepalm-evaluate: a packed system scored on a user's Kaldi data dir, as stage 14 scores the
recipe's; bad inputs refused before anything is written. (The refining modes run on the mini
recipe's real archive in test/integration/test_mini_recipe.py.)"""
import json

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.bin.sepalm_evaluate import main as evaluate_main
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv
from sepalm_espnet.evaluate import EvaluateOptions, evaluate
from sepalm_espnet.inference import SeparatorModel
from sepalm_espnet.metrics.separation import score_utterance
from sepalm_espnet.zoo import ArchiveError

FS = 16000


@pytest.fixture
def data_dir(tmp_path, voiced):
    """my_test: 2 mixtures of two voiced sounds, at 8 kHz (the system runs at 16 kHz)."""
    root = tmp_path / "data" / "my_test"
    (root / "wavs").mkdir(parents=True)
    tables = {name: {} for name in ("wav.scp", "spk1.scp", "spk2.scp", "text_spk1", "text_spk2")}
    for i, key in enumerate(("mix_a", "mix_b")):
        sources = [voiced(8000, seed=10 * i + n, fs=8000) for n in (1, 2)]
        for name, wave in (("mix", sources[0] + 0.7 * sources[1]), ("s1", sources[0]), ("s2", sources[1])):
            sf.write(root / "wavs" / f"{key}_{name}.wav", wave, 8000)
        tables["wav.scp"][key] = str(root / "wavs" / f"{key}_mix.wav")
        for n in (1, 2):
            tables[f"spk{n}.scp"][key] = str(root / "wavs" / f"{key}_s{n}.wav")
            tables[f"text_spk{n}"][key] = f"speaker {n} of {key}"
    for name, entries in tables.items():
        write_kv(root / name, entries)
    return root


def results_rows(path):
    lines = path.read_text().splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("| system")).strip("|").split("|")]
    return header, {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
                    for line in lines if line.startswith("| ") and not line.startswith("| system")}


def test_a_separator_archive_is_scored_on_a_data_dir_like_the_recipe(separator_archive, data_dir, tmp_path):
    outdir = tmp_path / "eval"
    evaluate_main(["--model", str(separator_archive), "--data_dirs", str(data_dir), "--outdir", str(outdir),
                   "--rtf_utterances", "1"])
    header, rows = results_rows(outdir / "RESULTS.md")
    row = rows["separator only (sep.zip)"]
    # The same figure from the public API's estimates, scored on their own.
    model = SeparatorModel.from_pretrained(separator_archive, cache_dir=tmp_path / "cache")
    expected = []
    for key in ("mix_a", "mix_b"):
        mixture, _ = sf.read(data_dir / "wavs" / f"{key}_mix.wav", dtype="float32")
        references = [sf.read(data_dir / "wavs" / f"{key}_s{n}.wav", dtype="float32")[0] for n in (1, 2)]
        estimates = model.separate(mixture, 8000)
        expected.append(score_utterance(key, mixture, references, estimates, 8000).metrics["si_snri"])
    assert float(row[header.index("SI-SNRi (dB)")]) == pytest.approx(np.mean(expected), abs=0.006)
    assert row[header.index("N")] == "2" and float(row[header.index("RTF")]) > 0
    flat = read_kv(outdir / "my_test/separator_only/wav.scp")
    assert sorted(flat) == ["mix_a_spk1", "mix_a_spk2", "mix_b_spk1", "mix_b_spk2"]
    assert sf.info(flat["mix_a_spk1"]).samplerate == 8000  # at the input's rate and length
    assert sf.info(flat["mix_a_spk1"]).frames == 8000
    assert read_kv(outdir / "my_test/separator_only/text")["mix_b_spk1"].startswith("speaker")
    # The same inputs again: scores up to date; another data dir into this outdir: refused.
    evaluate(EvaluateOptions(model=str(separator_archive), data_dirs=(str(data_dir),), outdir=str(outdir),
                             rtf_utterances=0))
    signature = json.loads((outdir / ".evaluate.json").read_text())
    write_kv(data_dir / "text_spk1", {"mix_a": "other words", "mix_b": "other words"})
    with pytest.raises(ValueError, match="holds an evaluation of another archive or data dir"):
        evaluate(EvaluateOptions(model=str(separator_archive), data_dirs=(str(data_dir),), outdir=str(outdir)))
    assert json.loads((outdir / ".evaluate.json").read_text()) == signature


def test_a_mode_the_archive_cannot_run_is_refused_before_anything_is_written(separator_archive, data_dir, tmp_path):
    with pytest.raises(ArchiveError, match="sepalm"):
        evaluate(EvaluateOptions(model=str(separator_archive), data_dirs=(str(data_dir),), outdir=str(tmp_path / "eval"),
                                 modes=("sepalm",)))
    assert not (tmp_path / "eval").exists()


def test_a_bad_data_dir_is_refused_naming_file_and_line(separator_archive, data_dir, tmp_path):
    with open(data_dir / "spk2.scp", "a") as f:
        f.write("mix_c\n")
    with pytest.raises(SystemExit, match="spk2.scp"):
        evaluate_main(["--model", str(separator_archive), "--data_dirs", str(data_dir),
                       "--outdir", str(tmp_path / "eval")])
    assert not (tmp_path / "eval").exists()
    with pytest.raises(DataDirError, match="no spk1.scp"):
        (data_dir / "spk1.scp").rename(data_dir / "elsewhere")
        (data_dir / "spk2.scp").unlink()
        (data_dir / "text_spk1").unlink()
        (data_dir / "text_spk2").unlink()
        evaluate(EvaluateOptions(model=str(separator_archive), data_dirs=(str(data_dir),), outdir=str(tmp_path / "eval")))
