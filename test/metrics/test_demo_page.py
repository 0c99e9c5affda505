"""The demo page on a tiny recipe tree: every system and key is on it, its links are relative and
resolve, word errors are marked, a missing system is "not available", outdir is never half-written."""
import html
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.bin import make_demo as make_demo_bin
from sepalm_espnet.metrics.demo_page import DemoOptions, make_demo, word_diff
from sepalm_espnet.metrics.separation import METRIC_NAMES, UtteranceScores, write_scores
from sepalm_espnet.metrics.systems import ManifestError

FS = 16000
UTTERANCES = ("m1", "m2", "m3")
TRUTH = {"m1_spk1": "the cat sat on the mat", "m1_spk2": "hello world", "m2_spk1": "a b c", "m2_spk2": "d e f",
         "m3_spk1": "one two", "m3_spk2": "three four"}
TEXT_PT = {**TRUTH, "m1_spk1": "the bat sat on mat"}  # cat -> bat substituted, the second "the" deleted
TEXT_CT = {**TRUTH, "m1_spk1": "The cat sat on the mat, today"}  # "today" inserted; case and comma ignored
SEPFORMER = "SepFormer <x> & co"  # a name that must be escaped
SEPALM = "SepALM (full)"
MISSING = "Synthesizer only"
PT, CT = "Corrector text_pt", "Corrector text_ct"


def _tone(freq, seed, seconds=0.5):
    t = np.arange(int(seconds * FS)) / FS
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * noise).astype(np.float32)


def _write_scp(path: Path, entries: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(entries.items())), encoding="utf-8")


def make_tiny_recipe(root: Path, test_set: str = "test") -> dict:
    """dump/raw/<set> mixtures, a flat separator decode dir (estimates, ref.scp, text, scores), a
    SepALM output without scores, two transcript files and a manifest whose no_aligner system is missing."""
    root = Path(root)
    wavs = root / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    mixtures, refs, sep, sal = {}, {}, {}, {}
    for u, utt in enumerate(UTTERANCES):
        sources = [_tone(220 * (u + 1), 10 * u), _tone(330 * (u + 1), 10 * u + 1)]
        mixture = 0.5 * (sources[0] + sources[1]) + 0.02 * _tone(50, 99 + u)
        sf.write(wavs / f"{utt}.wav", mixture, FS, subtype="FLOAT")  # not PCM: the page converts
        mixtures[utt] = str(wavs / f"{utt}.wav")
        for n, source in enumerate(sources, 1):
            key = f"{utt}_spk{n}"
            for table, name, signal in ((refs, "ref", source), (sep, "sep", source + 0.05 * sources[2 - n]),
                                        (sal, "sal", 0.9 * source)):
                sf.write(wavs / f"{key}_{name}.wav", signal, FS)
                table[key] = str(wavs / f"{key}_{name}.wav")
    _write_scp(root / f"dump/raw/{test_set}/wav.scp", mixtures)
    decode = root / f"exp/sep_x/decode/{test_set}"
    _write_scp(decode / "wav.scp", sep)
    _write_scp(decode / "ref.scp", refs)
    _write_scp(decode / "text", TRUTH)
    metrics = {utt: {name: 10.0 + u + i / 10 for i, name in enumerate(METRIC_NAMES)} for u, utt in enumerate(UTTERANCES)}
    metrics["m2"]["pesq"] = float("nan")
    write_scores(decode / "score", [UtteranceScores(utt, (0, 1), m) for utt, m in metrics.items()])
    _write_scp(root / f"exp/sal/{test_set}/wav.scp", sal)
    _write_scp(root / f"exp/cor/{test_set}/text_pt", TEXT_PT)
    _write_scp(root / f"exp/cor/{test_set}/text_ct", TEXT_CT)
    manifest = root / "exp/systems.tsv"
    manifest.write_text("".join(f"{name}\t{mode}\t{root}/{path}\n" for name, mode, path in (
        (SEPFORMER, "separator_only", "exp/sep_x/decode/{set}/wav.scp"),
        (MISSING, "no_aligner", "exp/syn/{set}/wav.scp"),
        (SEPALM, "sepalm", "exp/sal/{set}/wav.scp"),
        (PT, "transcript", "exp/cor/{set}/text_pt"),
        (CT, "transcript", "exp/cor/{set}/text_ct"),
    )), encoding="utf-8")
    return {"manifest": str(manifest), "mixture_dir": f"{root}/dump/raw/{{set}}",
            "reference_dir": f"{root}/exp/sep_x/decode/{{set}}", "metrics": metrics}


def data_options(recipe: dict) -> dict:
    return {k: recipe[k] for k in ("manifest", "mixture_dir", "reference_dir")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    recipe = make_tiny_recipe(root)
    index = make_demo(DemoOptions(**data_options(recipe), outdir=str(root / "exp/demo"), num_utterances=8))
    return recipe, index, index.read_text(encoding="utf-8")


def _articles(page: str) -> dict:
    return dict(re.findall(r'<article class="utt" id="[^"]*" data-key="([^"]*)">(.*?)</article>', page, re.S))


def test_page_lists_every_system_and_key(demo):
    recipe, index, page = demo
    assert index.name == "index.html" and index.parent.name == "demo"
    articles = _articles(page)
    assert list(articles) == list(UTTERANCES)
    for utt, body in articles.items():
        for label in ("mixture", "reference", html.escape(SEPFORMER, quote=True), html.escape(SEPALM), MISSING):
            assert f'data-system="{label}"' in body, (utt, label)
        assert body.count("<audio") == 1 + 2 * 3  # mixture; reference, SepFormer, SepALM x 2 speakers
        for n in (1, 2):
            assert f'data-key="{utt}_spk{n}"' in body
            assert f"/spk{n}.wav" in body
    assert SEPFORMER not in page and html.escape(SEPFORMER) in page  # escaped everywhere
    assert page.count("<img") == page.count("<audio") == 21


def test_missing_system_is_not_available_and_logged(tmp_path, caplog):
    recipe = make_tiny_recipe(tmp_path)
    with caplog.at_level(logging.WARNING):
        page = make_demo(DemoOptions(**data_options(recipe), outdir=str(tmp_path / "d"))).read_text()
    assert any(MISSING in r.getMessage() and "exp/syn/test/wav.scp" in r.getMessage() for r in caplog.records)
    listed = re.search(r'<ul class="unavailable">(.*?)</ul>', page, re.S).group(1)
    assert MISSING in listed and "not available" in listed and SEPALM not in listed
    for body in _articles(page).values():
        row = re.search(rf'<tr data-system="{MISSING}">(.*?)</tr>', body, re.S).group(1)
        assert row.count("not available") == 2 and "<audio" not in row


def test_links_are_relative_and_audio_is_pcm16(demo):
    _, index, page = demo
    links = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert links and all(not re.match(r"^[a-z]+:|^/", link) for link in links)
    for link in links:
        path = index.parent / html.unescape(link)
        assert path.is_file(), link
        assert link.startswith(("audio/", "img/"))
        if link.endswith(".wav"):
            info = sf.info(str(path))
            assert info.subtype == "PCM_16" and info.samplerate == FS and info.channels == 1
            assert abs(info.frames - FS // 2) <= 1
        else:
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(index.parent.parent.glob(".demo.*"))  # the staging folder is gone


def test_metrics_of_scored_systems(demo):
    recipe, _, page = demo
    for utt, body in _articles(page).items():
        table = re.search(r'<table class="metrics">(.*?)</table>', body, re.S).group(1)
        row = re.search(rf'<tr data-system="{re.escape(html.escape(SEPFORMER, quote=True))}">(.*?)</tr>', table, re.S).group(1)
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        expected = ["nan" if np.isnan(v) else f"{v:.2f}" for v in recipe["metrics"][utt].values()]
        assert cells == expected
        sal = re.search(rf'<tr data-system="{re.escape(SEPALM)}">(.*?)</tr>', table, re.S).group(1)
        assert "not scored" in sal
        assert "not available" in re.search(rf'<tr data-system="{MISSING}">(.*?)</tr>', table, re.S).group(1)


def test_word_diff_marks_the_errors():
    marked, counts = word_diff("the cat sat on the mat", "the bat sat on mat")
    assert re.findall(r'<del class="sub">([^<]*)</del> <ins class="sub">([^<]*)</ins>', marked) == [("cat", "bat")]
    assert re.findall(r'<del class="del">([^<]*)</del>', marked) == ["the"]
    assert counts == {"substitutions": 1, "deletions": 1, "insertions": 0, "ref_words": 6}
    marked, counts = word_diff("the cat sat", "The cat, sat <now>")
    assert re.findall(r'<ins class="ins">([^<]*)</ins>', marked) == ["&lt;now&gt;"]
    assert "<del" not in marked and "The cat, sat" in marked
    assert word_diff("", "")[0] == ""
    assert word_diff("", "a b")[1]["insertions"] == 2
    assert word_diff("a b", "")[1]["deletions"] == 2


def test_page_shows_transcript_diffs(demo):
    _, _, page = demo
    body = _articles(page)["m1"]
    def row(system):
        return re.search(rf'<tr data-system="{system}" data-key="m1_spk1">(.*?)</tr>', body, re.S).group(1)
    assert "the cat sat on the mat" in row("ground_truth")
    pt = row(PT)
    assert '<del class="sub">cat</del> <ins class="sub">bat</ins>' in pt and '<del class="del">the</del>' in pt
    assert "WER 33.3 % (1 sub, 1 del, 0 ins)" in pt
    ct = row(CT)
    assert '<ins class="ins">today</ins>' in ct and "<del" not in ct and "WER 16.7 %" in ct
    spk2 = re.search(rf'<tr data-system="{PT}" data-key="m1_spk2">(.*?)</tr>', body, re.S).group(1)
    assert "hello world" in spk2 and "<ins" not in spk2 and "WER 0.0 %" in spk2


def test_first_keys_sorted_and_outdir_never_overwritten(tmp_path):
    recipe = make_tiny_recipe(tmp_path)
    outdir = tmp_path / "exp/demo"
    make_demo(DemoOptions(**data_options(recipe), outdir=str(outdir), num_utterances=2))
    assert list(_articles((outdir / "index.html").read_text())) == ["m1", "m2"]
    with pytest.raises(ValueError, match="exists and is not empty.*--overwrite true"):
        make_demo(DemoOptions(**data_options(recipe), outdir=str(outdir)))
    assert len(_articles((outdir / "index.html").read_text())) == 2  # untouched
    (outdir / "stale.txt").write_text("old")
    make_demo(DemoOptions(**data_options(recipe), outdir=str(outdir), overwrite=True, num_utterances=1))
    assert list(_articles((outdir / "index.html").read_text())) == ["m1"]
    assert not (outdir / "stale.txt").exists()
    assert sorted(p.name for p in outdir.parent.iterdir()) == ["cor", "demo", "sal", "sep_x", "systems.tsv"]


def test_bad_inputs_name_the_file(tmp_path):
    recipe = make_tiny_recipe(tmp_path)
    manifest = Path(recipe["manifest"])
    manifest.write_text(manifest.read_text() + "broken line\n")
    with pytest.raises(ManifestError, match=r"systems.tsv:6: 1 tab-separated fields"):
        make_demo(DemoOptions(**data_options(recipe), outdir=str(tmp_path / "d")))
    manifest.write_text("\n".join(manifest.read_text().splitlines()[:-1]) + "\n")
    (tmp_path / "exp/sal/test/wav.scp").write_text("m1_spk1 /nonexistent.wav\nbad_key_x /y.wav\n")
    with pytest.raises(ValueError, match=r"exp/sal/test/wav.scp: key 'bad_key_x' is not <utterance>_spk<n>"):
        make_demo(DemoOptions(**data_options(recipe), outdir=str(tmp_path / "d")))
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="no {set}"):
        DemoOptions(mixture_dir="dump/raw/test")


def test_main_runs_and_exits_with_message(tmp_path, capsys):
    recipe = make_tiny_recipe(tmp_path)
    argv = ["--manifest", recipe["manifest"], "--test_sets", "test", "--mixture_dir", recipe["mixture_dir"],
            "--reference_dir", recipe["reference_dir"], "--outdir", str(tmp_path / "exp/demo"), "--num_utterances", "1"]
    make_demo_bin.main(argv)
    assert list(_articles((tmp_path / "exp/demo/index.html").read_text())) == ["m1"]
    with pytest.raises(SystemExit, match=r"^make_demo: .*exists and is not empty"):
        make_demo_bin.main(argv)
    make_demo_bin.main(argv[:-1] + ["2", "--overwrite", "true"])
    assert len(_articles((tmp_path / "exp/demo/index.html").read_text())) == 2


def test_references_default_to_the_separator_only_dir(tmp_path):
    recipe = make_tiny_recipe(tmp_path)
    options = {**data_options(recipe), "reference_dir": "none"}
    page = make_demo(DemoOptions(**options, outdir=str(tmp_path / "d"), num_utterances=1)).read_text()
    assert _articles(page)["m1"].count("<audio") == 7 and "the cat sat on the mat" in page
