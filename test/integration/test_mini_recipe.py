"""The mini recipe through run.sh, as a user runs it: every stage, on a tiny corpus with
1-2 epoch models; then the packed SepALM archive through from_pretrained and the CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.data.kaldi_dir import read_kv, read_text

pytestmark = pytest.mark.integration
TINY = [
    "--local_data_opts", "--n_train 6 --n_dev 2 --n_test 2",
    "--sep_args", "--max_epoch 1 --batch_size 2",
    "--cor_args", "--max_epoch 2",
    "--codec_args", "--max_steps 10",
    "--syn_args", "--max_epoch 1",
    "--ali_args", "--max_epoch 1",
    "--score_args", "--rtf_utterances 1",
]
LAST_STAGE = "16"
UPLOAD_DRY_RUN = ["--skip_upload_hf", "false", "--hf_repo", "sepalm/mini-test", "--hf_dry_run", "true"]
SEP = "sep_train_sep_sepformer_mini"
COR_DECODE = "cor_train_cor_tinyllama_mini/decode_default"
SYN_DECODE = "syn_train_syn_ar_nar_mini/decode_train_cor_tinyllama_mini_default"
ALI_DECODE = "ali_train_ali_cnn_mini/decode_train_syn_ar_nar_mini_train_cor_tinyllama_mini_default"
ARCHIVE = "packed/sepalm_train_sep_sepformer_mini.zip"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, recipe_tools):
    scratch_recipe, run_recipe = recipe_tools
    recipe_dir = scratch_recipe("mini_librimix", tmp_path_factory.mktemp("mini") / "sepalm1")
    proc = run_recipe(recipe_dir, ["--stage", "1", "--stop_stage", LAST_STAGE, *TINY, *UPLOAD_DRY_RUN], timeout=2700)
    (recipe_dir / "run.stderr").write_text(proc.stderr)
    (recipe_dir / "run.stdout").write_text(proc.stdout)
    return recipe_dir


def test_stage_1_2_dump_16k_mono_with_lengths(recipe):
    for dset, n in (("train", 6), ("dev", 2), ("test", 2)):
        dump = recipe / "dump" / "raw" / dset
        wavs = read_kv(dump / "wav.scp")
        assert len(wavs) == n
        assert set(read_kv(dump / "spk2.scp")) == set(wavs)
        lengths = read_kv(dump / "utt2num_samples")
        for key, path in wavs.items():
            info = sf.info(path)
            assert info.samplerate == 16000 and info.channels == 1
            assert int(lengths[key]) == info.frames
        assert (dump / ".done").is_file()
        assert read_kv(dump / "text_spk1", allow_empty_value=True).keys() == wavs.keys()


def test_stage_3_4_separate_every_set_with_a_permutation(recipe):
    exp = recipe / "exp" / "sep_train_sep_sepformer_mini"
    assert (exp / "valid.si_snr_loss.ave.pth").exists()
    assert "sample_rate: 16000" in (exp / "config.yaml").read_text()
    for dset in ("train", "dev", "test"):
        decode = exp / "decode" / dset
        mixtures = read_kv(recipe / "dump" / "raw" / dset / "wav.scp")
        permutation = read_kv(decode / "permutation")
        assert permutation.keys() == mixtures.keys()
        assert all(sorted(p.split()) == ["1", "2"] for p in permutation.values())
        for spk in (1, 2):
            estimates = read_kv(recipe / decode.relative_to(recipe) / f"spk{spk}.scp")
            assert estimates.keys() == mixtures.keys()
            key, path = next(iter(estimates.items()))
            estimate, fs = sf.read(recipe / path)
            assert fs == 16000 and len(estimate) == sf.info(mixtures[key]).frames
            assert np.all(np.isfinite(estimate))
        # The per-estimate dir every later stage reads: the permutation applied once, here.
        flat = read_kv(decode / "wav.scp")
        assert set(flat) == {f"{key}_spk{n}" for key in mixtures for n in (1, 2)}
        references = read_kv(decode / "ref.scp")
        texts = read_text(decode / "text")
        # Flat keys in reference order: <key>_spk<ref> holds reference <ref> and its matched estimate.
        for key, perm in permutation.items():
            for ref, est in enumerate(perm.split(), start=1):
                assert references[f"{key}_spk{ref}"] == read_kv(recipe / "dump/raw" / dset / f"spk{ref}.scp")[key]
                assert texts[f"{key}_spk{ref}"] == read_text(recipe / "dump/raw" / dset / f"text_spk{ref}")[key]
                assert flat[f"{key}_spk{ref}"] == read_kv(decode / f"spk{est}.scp")[key]


def test_stage_5_6_teacher_transcripts_and_units(recipe):
    decode = recipe / "exp" / SEP / "decode" / "test"
    keys = read_kv(decode / "wav.scp").keys()
    for name in ("text_pt", "text_ct"):
        texts = read_text(decode / "teacher" / name)
        assert texts.keys() == keys and all("." not in t for t in texts.values())
    units = read_text(decode / "units_kmeans_logmel64" / "units")
    assert units.keys() == keys
    assert all(0 <= int(u) < 64 for line in units.values() for u in line.split())
    assert (recipe / "exp/kmeans_logmel64/centers.npy").is_file()


def test_stage_7_8_corrector_outputs_and_text_wer(recipe):
    assert (recipe / "exp/tokenizer_train_cor_tinyllama_mini/tokenizer.json").is_file()
    decode = recipe / "exp" / COR_DECODE / "test"
    status = read_kv(decode / "status")
    assert len(status) == 4 and set(status.values()) <= {"parsed", "fallback_preliminary", "fallback_teacher"}
    assert sum(json.loads((decode / "fallback.json").read_text()).values()) == 4
    assert read_text(decode / "text_ct").keys() == status.keys()
    wer = json.loads((decode / "score/text_ct/wer_summary.json").read_text())
    assert wer["wer_gt"] >= 0 and wer["n_transcripts"] == 4
    assert wer["n_fallbacks"] == 4 - sum(v == "parsed" for v in status.values())


def test_stage_9_to_13_tokens_refined_and_aligned_speech(recipe):
    tokens = recipe / "exp" / SEP / "decode/train/codec_train_codec_dac_mini"
    assert len(read_kv(tokens / "est_tokens.scp")) == len(read_kv(tokens / "ref_tokens.scp")) == 12
    assert (recipe / "exp/codec_train_codec_dac_mini/valid.json").is_file()
    assert (recipe / "exp" / COR_DECODE / "phoneme_token_list.txt").is_file()
    # Every worker is given the recipe's device (stage 13's aligner once ran on the CPU with --ngpu 1).
    for step, dir in (("separate", f"{SEP}/decode/test"), ("teacher", f"{SEP}/decode/test/teacher"),
                      ("correct", f"{COR_DECODE}/test"), ("synthesize", f"{SYN_DECODE}/test"),
                      ("align", f"{ALI_DECODE}/test")):
        command = (recipe / "exp" / dir / "logdir" / f"{step}.1.log").read_text().splitlines()[0]
        assert "--device cpu" in command, step
    mixtures = read_kv(recipe / "dump/raw/test/wav.scp")
    oracle_decodes = [f"syn_train_syn_ar_nar_mini/decode_oracle_{rung}" for rung in ("gt_text", "teacher_s")]
    for decode in (SYN_DECODE, ALI_DECODE, *oracle_decodes):
        outputs = read_kv(recipe / "exp" / decode / "test" / "speech.scp")
        assert outputs.keys() == {f"{key}_spk{n}" for key in mixtures for n in (1, 2)}
        for key, path in outputs.items():
            wave, fs = sf.read(recipe / path)
            assert fs == 16000 and len(wave) == sf.info(mixtures[key.rsplit("_spk", 1)[0]]).frames
            assert np.all(np.isfinite(wave))


def test_stage_14_results_table_has_every_system(recipe):
    results = (recipe / "exp" / "RESULTS.md").read_text()
    assert "## test" in results
    header = next(line for line in results.splitlines() if line.startswith("| system"))
    assert "WER (GT, %)" in header and "SIM" in header
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in results.splitlines() if line.startswith("| ") and not line.startswith("| system")}
    systems = [name for name in rows if name.startswith(("Separator only", "SepALM"))]
    assert len(systems) == 3, rows.keys()
    for name in systems:
        float(rows[name][0])  # SI-SNRi
        assert rows[name][4] == "2"  # N utterances
    assert any(name.startswith("Corrector") and "corrected" in name for name in rows)
    oracles = [name for name in rows if "(oracle" in name]
    assert [name.split(" (")[0] for name in oracles] == [
        "Codec resynthesis of s", "Synthesizer from ground-truth text", "Synthesizer from the teacher's transcript of s"]
    for name in oracles:  # the oracle ladder's rungs are scored on the same estimates
        float(rows[name][0])
        assert rows[name][4] == "2"
    assert "RTF" in header and float(rows[systems[-1]][-1]) > 0  # the full system's RTF on 5 s inputs


def test_stage_14_pages_play_every_system(recipe):
    import html

    from sepalm_espnet.metrics.systems import read_systems

    page = html.unescape((recipe / "exp/demo/index.html").read_text())
    speech = [s for s in read_systems(recipe / "exp/systems.tsv") if s.is_speech]
    assert speech and all(f'data-system="{s.name}"' in page for s in speech)
    players = page.count("<audio ")
    assert players == 2 * (1 + 2 * (1 + len(speech)))  # 2 mixtures: mixture, references, each system's 2 speakers
    assert len(list((recipe / "exp/demo/img").rglob("*.png"))) == players
    for test in ("nmos", "smos"):
        assert "hidden_reference" in (recipe / f"exp/mos/{test}.html").read_text()


def test_stage_15_archive_separates_like_the_recipe(recipe):
    from sepalm_espnet.inference import SeparatorModel

    model = SeparatorModel.from_pretrained(recipe / "exp" / ARCHIVE, cache_dir=recipe / "cache")
    key, path = next(iter(read_kv(recipe / "dump" / "raw" / "test" / "wav.scp").items()))
    estimates = model.separate(path)
    decoded = read_kv(recipe / "exp" / SEP / "decode" / "test" / "spk1.scp")
    np.testing.assert_allclose(estimates[0], sf.read(recipe / decoded[key], dtype="float32")[0], atol=1e-4)


def test_stage_16_dry_run_lists_the_archive_files(recipe):
    out = (recipe / "run.stdout").read_text() + (recipe / "run.stderr").read_text()
    assert "sepalm/mini-test" in out and "meta.yaml" in out and "aligner/model.safetensors" in out


@pytest.fixture(scope="module")
def sepalm(recipe):
    from sepalm_espnet.inference import SepALM

    return SepALM.from_pretrained(recipe / "exp" / ARCHIVE, cache_dir=recipe / "cache")


def test_packed_sepalm_round_trips_with_identical_outputs(recipe, sepalm):
    from sepalm_espnet import zoo
    from sepalm_espnet.inference import SepALM

    path = next(iter(read_kv(recipe / "dump/raw/test/wav.scp").values()))
    first = sepalm.separate(path)
    unpacked = zoo.unpack(recipe / "exp" / ARCHIVE, recipe / "unpacked")
    again = SepALM.from_pretrained(unpacked).separate(path)
    assert len(first) == 2
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.waveform, b.waveform)
        assert (a.preliminary, a.corrected) == (b.preliminary, b.corrected)
    assert set(sepalm.rtf.to_json()["components"]) == {"separator", "units", "corrector", "g2p", "synthesizer", "aligner"}


def test_sepalm_defined_output_on_short_silent_and_bad_input(sepalm):
    from sepalm_espnet.data.audio import AudioError

    for audio in (0.1 * np.random.default_rng(0).standard_normal(3200), np.zeros(16000)):  # 0.2 s; silence
        speakers = sepalm.separate(audio.astype(np.float32), 16000)
        assert [len(s.waveform) for s in speakers] == [len(audio)] * 2
        assert all(np.all(np.isfinite(s.waveform)) for s in speakers)
    with pytest.raises(AudioError, match="NaN"):
        sepalm.separate(np.full(16000, np.nan, dtype=np.float32), 16000)


def test_cli_on_a_stereo_8k_file_and_in_scp_batch_mode(recipe, tmp_path):
    path = next(iter(read_kv(recipe / "dump/raw/test/wav.scp").values()))
    mono, fs = sf.read(path, dtype="float32")
    stereo = np.stack([mono[::2], 0.5 * mono[::2]], axis=1)
    sf.write(tmp_path / "mix.wav", stereo, fs // 2)
    cli = [sys.executable, "-m", "sepalm_espnet.bin.sepalm_separate", "--model", str(recipe / "exp" / ARCHIVE)]
    subprocess.run([*cli, str(tmp_path / "mix.wav"), "--outdir", str(tmp_path / "out")], check=True,
                   capture_output=True)
    for spk in (1, 2):
        info = sf.info(tmp_path / "out" / f"mix_spk{spk}.wav")
        assert info.samplerate == 8000 and info.frames == len(stereo) and info.channels == 1
    report = json.loads((tmp_path / "out/mix.json").read_text())
    assert len(report["speakers"]) == 2 and "corrected" in report["speakers"][0]
    assert json.loads((tmp_path / "out/rtf.json").read_text())["rtf"] > 0
    proc = subprocess.run([*cli, "--outdir", str(tmp_path / "bad"), str(tmp_path / "missing.wav")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "missing.wav" in proc.stderr
    subprocess.run([*cli, "--wav_scp", str(recipe / "dump/raw/test/wav.scp"), "--outdir", str(tmp_path / "batch")],
                   check=True, capture_output=True)
    assert read_kv(tmp_path / "batch/spk2.scp").keys() == read_kv(recipe / "dump/raw/test/wav.scp").keys()
    assert read_text(tmp_path / "batch/text_ct_spk1").keys() == read_kv(tmp_path / "batch/spk1.scp").keys()


def results_table(path):
    lines = path.read_text().splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("| system")).strip("|").split("|")]
    return header, {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
                    for line in lines if line.startswith("| ") and not line.startswith("| system")}


def test_a_packed_model_is_scored_on_the_test_sets_without_training(recipe, recipe_tools):
    proc = recipe_tools[1](recipe, ["--stage", "1", "--stop_stage", "14", *TINY, "--pretrained_model", f"exp/{ARCHIVE}"])
    assert "Stage 3:" not in proc.stderr and "Stage 13:" not in proc.stderr
    header, rows = results_table(recipe / "exp/pretrained_sepalm_train_sep_sepformer_mini/RESULTS.md")
    name = "sepalm_train_sep_sepformer_mini.zip"
    assert {f"separator only ({name})", f"without aligner ({name})", f"SepALM ({name})",
            f"corrector corrected, sepalm ({name})"} <= set(rows)
    for row in rows.values():
        assert row[header.index("N")] == "2"
    recipe_header, recipe_rows = results_table(recipe / "exp/RESULTS.md")
    (separator,) = [row for system, row in recipe_rows.items() if system.startswith("Separator only")]
    # The archive's separator on the same dumped test set: stage 4's figures.
    for column in ("SI-SNRi (dB)", "SDRi (dB)"):
        assert rows[f"separator only ({name})"][header.index(column)] == separator[recipe_header.index(column)], column
    assert float(rows[f"SepALM ({name})"][header.index("RTF")]) > 0


def test_rerun_skips_finished_stages(recipe, recipe_tools):
    proc = recipe_tools[1](recipe, ["--stage", "1", "--stop_stage", "14", *TINY])
    for line in ("data is up to date, skipped", "dump/raw/train is up to date, skipped",
                 "sep_stats_train_sep_sepformer_mini_16000 is up to date, skipped", f"{SEP} is up to date, skipped",
                 "decode/test/teacher is up to date, skipped", "kmeans_logmel64 is up to date, skipped",
                 "cor_train_cor_tinyllama_mini is up to date, skipped", "decode_default/test is up to date, skipped",
                 "codec_train_codec_dac_mini is up to date, skipped", "syn_train_syn_ar_nar_mini is up to date, skipped",
                 "ali_train_ali_cnn_mini is up to date, skipped", f"{ALI_DECODE}/test is up to date, skipped",
                 "decode/test/score is up to date, skipped"):
        assert line in proc.stderr, line
    assert "moved to" not in proc.stderr and "Stage 3: separator" in proc.stderr


def test_table_3_ablations_a_and_e_add_their_rows(recipe, recipe_tools):
    """(a) re-separation from the corrected text instead of re-synthesis; (e) the cascade's LM
    fine-tuned on the 3-best of the estimates: each a run of the same recipe, scored by stage 14."""
    recipe_tools[1](recipe, ["--stage", "10", "--stop_stage", "11", *TINY, "--resep_args", "--max_epoch 1",
                             "--resep_config", "conf/tuning/train_resep_sepformer_mini.yaml"])
    recipe_tools[1](recipe, ["--stage", "7", "--stop_stage", "8", *TINY, "--cor_cascade_args", "--max_epoch 1",
                             "--cor_cascade_config", "conf/tuning/train_ger_tinyllama_mini.yaml"])
    recipe_tools[1](recipe, ["--stage", "14", "--stop_stage", "14", *TINY])
    header, rows = results_table(recipe / "exp/RESULTS.md")
    resep = rows["Re-separation from the corrected text (Table 3 a, train_resep_sepformer_mini)"]
    float(resep[header.index("SI-SNRi (dB)")])
    assert resep[header.index("N")] == "2"
    cascade = rows["Corrector train_cor_tinyllama_mini/cascade_ft_train_ger_tinyllama_mini: corrected"]
    float(cascade[header.index("WER (GT, %)")])
    assert cascade[header.index("fallbacks")] != "-"  # the 1-epoch LM's fallbacks to the 1-best are counted
    assert (recipe / "exp/ger_train_ger_tinyllama_mini/valid.loss.ave.pth").is_file()


def test_an_archive_of_other_components_is_kept_not_replaced(recipe, recipe_tools):
    archive = recipe / "exp" / ARCHIVE
    stderr = recipe_tools[1](recipe, ["--stage", "15", "--stop_stage", "15", *TINY]).stderr
    assert "moved to" not in stderr  # the same system: packed again in place
    before = archive.read_bytes()
    stderr = recipe_tools[1](recipe, ["--stage", "15", "--stop_stage", "15", *TINY,
                                      "--sep_inference_model", "1epoch.pth"]).stderr
    assert f"exp/{ARCHIVE} was made with other inputs or options: moved to" in stderr
    (aside,) = archive.parent.glob(f"{archive.name}.old.*")
    assert aside.read_bytes() == before and archive.read_bytes() != before


SLM_SS = ["--separator_type", "slm_ss", "--sep_config", "conf/tuning/train_slm_ss_mini.yaml", "--system_tag", "slm_ss"]


def test_slm_ss_and_its_sepalm_refinement_are_rows_beside_sepformer(recipe, recipe_tools):
    """SLM-SS (generative separator) trained by stage 3 on codec tokens, its estimates through
    stages 4-13 as a second system of the same expdir (--system_tag), both scored by stage 14."""
    _, before = results_table(recipe / "exp/RESULTS.md")
    stderr = recipe_tools[1](recipe, ["--stage", "3", "--stop_stage", "13", *TINY, *SLM_SS]).stderr
    assert "moved to" not in stderr  # the SepFormer system's experiments are left as they are
    assert "codec_train_codec_dac_mini is up to date, skipped" in stderr  # stage 3 reuses stage 9's codec
    recipe_tools[1](recipe, ["--stage", "14", "--stop_stage", "14", *TINY])
    header, rows = results_table(recipe / "exp/RESULTS.md")
    separator = rows["Separator only (train_slm_ss_mini)"]
    sepalm = rows["SepALM (train_cor_tinyllama_mini/default, train_syn_ar_nar_mini, train_ali_cnn_mini) [slm_ss]"]
    for row in (separator, sepalm, rows["SepALM without aligner (train_cor_tinyllama_mini/default, "
                                        "train_syn_ar_nar_mini) [slm_ss]"]):
        float(row[header.index("SI-SNRi (dB)")])
        assert row[header.index("N")] == "2"
    assert int(separator[header.index("separator length-cap hits")]) >= 0  # counted, whatever it is
    assert rows["Separator only (train_sep_sepformer_mini)"][:5] == before["Separator only (train_sep_sepformer_mini)"][:5]
    statuses = read_kv(recipe / "exp/sep_train_slm_ss_mini/decode/test/decode_status")
    assert statuses.keys() == read_kv(recipe / "dump/raw/test/wav.scp").keys()
    assert (recipe / "exp/ali_train_ali_cnn_mini_slm_ss/valid.loss.ave.pth").is_file()


def test_upload_stage_needs_a_repo(recipe, recipe_tools):
    with pytest.raises(AssertionError, match="stage 16 needs --hf_repo"):
        recipe_tools[1](recipe, ["--stage", "16", "--stop_stage", "16", "--skip_upload_hf", "false"])


def test_unknown_option_is_rejected(recipe, recipe_tools):
    with pytest.raises(AssertionError, match="no_such_option"):
        recipe_tools[1](recipe, ["--no_such_option", "1"])


def test_other_sample_rate_redoes_stage_2(recipe, recipe_tools):
    recipe_tools[1](recipe, ["--stage", "2", "--stop_stage", "2", "--fs", "8000", *TINY])
    path = read_kv(recipe / "dump" / "raw" / "test" / "wav.scp").popitem()[1]
    assert sf.info(path).samplerate == 8000
