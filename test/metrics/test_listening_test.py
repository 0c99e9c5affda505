"""The NMOS / SMOS pages (items, controls, opaque ids, reproducible draw) and the aggregation
(numbers equal a hand computation on simulated listeners; malformed files are refused)."""
import html
import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from sepalm_espnet.bin import mos_aggregate as mos_aggregate_bin
from sepalm_espnet.metrics.listening_test import (
    HIDDEN_REFERENCE,
    LOW_ANCHOR,
    RESULTS_SECTION,
    MosOptions,
    ResultsError,
    aggregate,
    make_mos,
    mos_aggregate,
)
from test_demo_page import MISSING, SEPALM, SEPFORMER, data_options, make_tiny_recipe

SPEECH = (SEPFORMER, SEPALM)  # the speech systems with outputs (MISSING has none)


def embedded_items(page: str) -> list:
    return json.loads(re.search(r"^var ITEMS = (.*);$", page, re.M).group(1))


def visible_text(page: str) -> str:
    return re.sub(r"<script>.*?</script>", "", page, flags=re.S)


@pytest.fixture(scope="module")
def mos(tmp_path_factory):
    root = tmp_path_factory.mktemp("mos")
    recipe = make_tiny_recipe(root)
    pages = make_mos(MosOptions(**data_options(recipe), outdir=str(root / "exp/mos"), num_utterances=4, seed=0))
    return root, recipe, pages


def test_pages_hold_every_system_and_the_controls(mos):
    root, _, pages = mos
    assert sorted(pages) == ["nmos", "smos"]
    for test, path in pages.items():
        page = path.read_text(encoding="utf-8")
        items = embedded_items(page)
        keys = sorted({item["key"] for item in items})
        assert len(keys) == 4 and all(re.fullmatch(r"m[123]_spk[12]", k) for k in keys)
        for key in keys:
            systems = sorted(item["system"] for item in items if item["key"] == key)
            assert systems == sorted([HIDDEN_REFERENCE, LOW_ANCHOR, *SPEECH])
        assert len(items) == 4 * 4 and len({item["id"] for item in items}) == len(items)
        text = visible_text(page)
        for name in (*SPEECH, MISSING, HIDDEN_REFERENCE, LOW_ANCHOR, "sep_x", "sal"):
            assert name not in text and html.escape(name) not in text
        for item in items:
            assert re.fullmatch(rf"{test[0]}\d{{3}}", item["id"])
            assert re.fullmatch(r"audio/a\d{4}\.wav", item["audio"]) and (path.parent / item["audio"]).is_file()
            assert ("reference" in item) == (test == "smos")
        assert [item["id"] for item in items] == sorted(item["id"] for item in items)
        # opaque ids: the page's item order is not grouped by system
        assert [item["system"] for item in items[:4]] != [item["system"] for item in items[4:8]]
        assert "<script src" not in page and "http" not in page.replace("navigator.userAgent", "")


def test_controls_are_what_the_docs_say(mos):
    root, recipe, pages = mos
    import soundfile as sf

    def audio(page_path, rel):
        return sf.read(str(page_path.parent / rel))[0]

    ref_scp = dict(line.split() for line in (root / "exp/sep_x/decode/test/ref.scp").read_text().splitlines())
    mix_scp = dict(line.split() for line in (root / "dump/raw/test/wav.scp").read_text().splitlines())
    for test, path in pages.items():
        for item in embedded_items(path.read_text()):
            utt, n = item["key"].rsplit("_spk", 1)
            if item["system"] == HIDDEN_REFERENCE:
                expected = sf.read(ref_scp[item["key"]])[0]
            elif item["system"] == LOW_ANCHOR and test == "nmos":
                expected = np.clip(sf.read(mix_scp[utt])[0], -1, 1)
            elif item["system"] == LOW_ANCHOR:
                expected = sf.read(ref_scp[f"{utt}_spk{3 - int(n)}"])[0]  # the other speaker
            else:
                continue
            np.testing.assert_allclose(audio(path, item["audio"]), expected, atol=1 / 16384)
            if test == "smos":
                np.testing.assert_allclose(audio(path, item["reference"]), sf.read(ref_scp[item["key"]])[0],
                                           atol=1 / 16384)


def test_draw_is_seeded(tmp_path, mos, caplog):
    root, recipe, pages = mos
    def keys(outdir, seed, n=4):
        made = make_mos(MosOptions(**data_options(recipe), outdir=str(outdir), num_utterances=n, seed=seed))
        return sorted({item["key"] for item in embedded_items(made["nmos"].read_text())}), made
    same, made = keys(tmp_path / "a", 0)
    assert same == sorted({item["key"] for item in embedded_items(pages["nmos"].read_text())})
    assert made["nmos"].read_text() == pages["nmos"].read_text()
    assert any(keys(tmp_path / f"s{seed}", seed)[0] != same for seed in (1, 2, 3))
    with caplog.at_level(logging.WARNING):
        assert len(keys(tmp_path / "all", 0, n=100)[0]) == 6
    assert "100 segments asked for, only 6" in caplog.text
    with pytest.raises(ValueError, match="exists and is not empty"):
        keys(tmp_path / "a", 0)


def _result(test, listener, scores_by_system, keys=("m1_spk1", "m2_spk2")):
    ratings, n = [], 0
    for system, scores in scores_by_system.items():
        for key, score in zip(keys, scores):
            n += 1
            ratings.append({"item": f"{test[0]}{n:03d}", "system": system, "set": "test", "key": key, "score": score})
    return {"test": test, "listener": listener, "ratings": ratings, "order": [r["item"] for r in ratings],
            "user_agent": "pytest", "time": "2026-01-01T00:00:00Z"}


def simulate_listeners(outdir: Path, n_listeners=15, seed=0):
    """15 listeners x 2 tests; listener L14 swaps the hidden reference and the low anchor in NMOS."""
    rng = np.random.default_rng(seed)
    means = {HIDDEN_REFERENCE: 4.6, SEPALM: 3.8, SEPFORMER: 3.1, LOW_ANCHOR: 1.4}
    paths = []
    for test in ("nmos", "smos"):
        for i in range(n_listeners):
            scores = {s: [int(np.clip(round(rng.normal(m, 0.8)), 1, 5)) for _ in range(2)] for s, m in means.items()}
            if test == "nmos" and i == 14:
                scores[HIDDEN_REFERENCE], scores[LOW_ANCHOR] = [1, 2], [5, 4]
            path = outdir / f"{test}_L{i:02d}.json"
            path.write_text(json.dumps(_result(test, f"L{i:02d}", scores)))
            paths.append(path)
    return paths


def test_aggregate_equals_hand_computation(tmp_path):
    paths = simulate_listeners(tmp_path)
    scores, warnings = aggregate(paths)
    assert [(s.test, s.system) for s in scores] == [
        (t, s) for t in ("nmos", "smos") for s in (HIDDEN_REFERENCE, SEPALM, SEPFORMER, LOW_ANCHOR)]  # controls first and last
    for s in scores:
        values = [r["score"] for p in paths for d in [json.loads(p.read_text())] if d["test"] == s.test
                  for r in d["ratings"] if r["system"] == s.system]
        assert s.n_ratings == len(values) == 30 and s.n_listeners == 15
        assert s.mean == pytest.approx(np.mean(values))
        low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values))
        assert s.ci95 == pytest.approx((high - low) / 2)
    assert len(warnings) == 1 and "nmos: listener 'L14'" in warnings[0] and "nmos_L14.json" in warnings[0]
    assert "(1.50) below the low anchor (4.50)" in warnings[0]


def test_single_rating_has_no_interval(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(_result("smos", "solo", {SEPALM: [4]}, keys=("m1_spk1",))))
    (score,), warnings = aggregate([path])
    assert score.mean == 4 and math.isnan(score.ci95) and score.n_listeners == 1 and not warnings


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", r"bad.json:1: not JSON"),
    (lambda d: {**d, "test": "mushra"}, r"bad.json: 'test' is 'mushra'"),
    (lambda d: {**d, "listener": ""}, r"bad.json: 'listener' is missing or empty"),
    (lambda d: {**d, "ratings": []}, r"bad.json: 'ratings' is missing or empty"),
    (lambda d: {**d, "ratings": [{**d["ratings"][0], "score": 6}]}, r"bad.json: rating 1 \(item n001\): score 6"),
    (lambda d: {**d, "ratings": [{**d["ratings"][0], "score": None}]}, r"score None is not an integer"),
    (lambda d: {**d, "ratings": [d["ratings"][0], d["ratings"][0]]}, r"rating 2: item n001 is rated twice"),
    (lambda d: {**d, "ratings": [{"item": "n001", "score": 3}]}, r"rating 1: 'system' is missing"),
])
def test_malformed_results_are_refused_naming_the_file(tmp_path, mutate, message):
    good = _result("nmos", "L1", {SEPALM: [3, 4]})
    bad = mutate(good)
    path = tmp_path / "bad.json"
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    other = tmp_path / "good.json"
    other.write_text(json.dumps(_result("nmos", "L2", {SEPALM: [3, 4]})))
    with pytest.raises(ResultsError, match=message):
        aggregate([other, path])


def test_a_listener_twice_is_refused(tmp_path):
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(_result("nmos", "L1", {SEPALM: [3, 4]})))
    with pytest.raises(ResultsError, match=r"b.json: listener 'L1' already has nmos results in .*a.json"):
        aggregate([tmp_path / "a.json", tmp_path / "b.json"])


def test_results_md_section_is_replaced_in_place(tmp_path, capsys):
    paths = simulate_listeners(tmp_path)
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\n## Separation\n\n| a | b |\n\n" + RESULTS_SECTION + "\n\nold numbers\n\n## Other\n\nkept\n")
    text = mos_aggregate(paths, md)
    assert capsys.readouterr().out == text
    lines = text.splitlines()
    assert lines[0].split() == ["test", "system", "MOS", "95%", "CI", "ratings", "listeners"]
    assert len(lines) == 9 and lines[1].split()[:2] == ["NMOS", HIDDEN_REFERENCE]
    new = md.read_text()
    assert new.startswith("# Results\n\n## Separation\n\n| a | b |\n\n" + RESULTS_SECTION)
    assert "old numbers" not in new and new.endswith("\n## Other\n\nkept\n") and new.count(RESULTS_SECTION) == 1
    assert "### NMOS" in new and "### SMOS" in new and f"| {SEPALM} |" in new
    mos_aggregate(paths, md)
    assert md.read_text() == new  # idempotent
    fresh = tmp_path / "new.md"
    mos_aggregate(paths, fresh)
    assert fresh.read_text().startswith(RESULTS_SECTION)


def test_main_prints_and_fails_with_message(tmp_path, capsys, caplog):
    paths = simulate_listeners(tmp_path)
    with caplog.at_level(logging.WARNING):
        mos_aggregate_bin.main([str(p) for p in paths])
    out = capsys.readouterr().out
    assert re.search(rf"NMOS\s+{re.escape(SEPALM)}\s+\d\.\d\d\s+± \d\.\d\d\s+30\s+15", out)
    assert "listener 'L14'" in caplog.text
    (tmp_path / "broken.json").write_text("[]")
    with pytest.raises(SystemExit, match=r"^mos_aggregate: .*broken.json: not a JSON object"):
        mos_aggregate_bin.main([str(tmp_path / "broken.json")])
