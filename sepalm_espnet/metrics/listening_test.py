"""The paper's listening tests (NMOS: naturalness, SMOS: speaker similarity to a reference
recording; 1-5, 5 the best), as two static pages any listener opens from a folder, and their
aggregation into mean ± 95 % confidence interval per system.

    python -m sepalm_espnet.bin.make_mos --manifest exp/systems.tsv --test_sets test \\
        --mixture_dir "dump/raw/{set}" --reference_dir "exp/sep_x/decode/{set}" --outdir exp/mos \\
        --num_utterances 30 --seed 0
    python -m sepalm_espnet.bin.mos_aggregate results/*.json --results_md exp/RESULTS.md

Segments: `num_utterances` estimate keys (`<utt>_spk<n>` of ref.scp) drawn at random (`seed`)
over all test sets. Each segment gives one item per speech system of the manifest that has it,
plus two controls:

- `hidden_reference`: the clean reference itself (it should get the top score);
- `low_anchor`: in NMOS the mixture itself (overlapped speech and noise: clearly unnatural for
  one talker); in SMOS the clean reference of *another* speaker of the same mixture (a
  different speaker for sure; the mixture when it has a single speaker).

In SMOS every item is rated against the clean reference of its segment. The audio files and item
ids are opaque (`i001.wav`, ...) and in a seeded shuffled order, so neither the file names nor
the page's source order give the system away; the mapping item -> (system, set, key) is in the
page for the results file. The page's script shuffles the items per listener, seeded by the
listener id (the same id gives the same order), refuses to submit while an item is unrated and
then downloads `{test, listener, ratings: [{item, system, set, key, score}], order, user_agent,
time}` as `<test>_<listener>.json`.

Aggregation: per test and system, mean over all ratings, the t-based 95 % interval
`t.ppf(0.975, n-1) * sd / sqrt(n)` (sd with n-1), the number of ratings and of listeners; a
listener who rated the hidden reference below the low anchor on average is warned about (not
dropped). A listener with two results files of one test is an error: remove one.
"""
from __future__ import annotations

import html
import json
import logging
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path
from sepalm_espnet.metrics.demo_page import (
    NOT_AVAILABLE,
    SetData,
    load_sets,
    script_json,
    speech_systems,
    staged_dir,
    write_pcm16,
)
from sepalm_espnet.metrics.systems import SystemsInputs

logger = logging.getLogger(__name__)

TESTS = ("nmos", "smos")
HIDDEN_REFERENCE = "hidden_reference"
LOW_ANCHOR = "low_anchor"
CONTROLS = (HIDDEN_REFERENCE, LOW_ANCHOR)
SCORES = (1, 2, 3, 4, 5)
RESULTS_SECTION = "## Listening test (NMOS / SMOS)"

ANCHORS = {
    "nmos": (
        "How natural does the speech sound?",
        {5: "Excellent: completely natural speech",
         4: "Good: mostly natural speech",
         3: "Fair: equally natural and unnatural",
         2: "Poor: mostly unnatural speech",
         1: "Bad: completely unnatural speech"}),
    "smos": (
        "Is the rated speech by the same speaker as the reference recording? Judge the voice, "
        "not the quality or the words.",
        {5: "Same speaker, for sure",
         4: "Probably the same speaker",
         3: "Cannot tell",
         2: "Probably a different speaker",
         1: "Different speaker, for sure"}),
}
TITLES = {"nmos": "Naturalness (NMOS)", "smos": "Speaker similarity (SMOS)"}


@dataclass
class MosOptions(SystemsInputs):
    """Options of bin/make_mos.py (one --<field> each; the defaults live here only)."""

    outdir: str = field(default="exp/mos", metadata={"help": "the test folder (nmos.html, smos.html, audio/)"})
    num_utterances: int = field(default=30, metadata={"help": "segments (estimate keys) drawn at random"})
    seed: int = field(default=0, metadata={"help": "seed of the segment draw and of the item ids"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty outdir"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_utterances < 1:
            raise ValueError(f"num_utterances {self.num_utterances}: must be at least 1")


@dataclass(frozen=True)
class Item:
    system: str
    test_set: str
    key: str  # <utt>_spk<n>
    audio: str  # wav.scp value of the rated speech
    where: str  # file and key it came from, for errors


# ----------------------------------------------------------------------------- items


def draw_segments(sets: Sequence[SetData], count: int, seed: int) -> List[Tuple[SetData, str, int]]:
    """(set, utt, speaker index) of `count` reference estimates, drawn without replacement."""
    pool = [(data, utt, n) for data in sets if data.references
            for n, speaker in enumerate(data.references) for utt in sorted(speaker)]
    if not pool:
        raise ValueError("no references on any test set: nothing to rate")
    if count > len(pool):
        logger.warning("%d segments asked for, only %d references: all are used", count, len(pool))
    drawn = random.Random(seed).sample(range(len(pool)), min(count, len(pool)))
    return [pool[i] for i in sorted(drawn)]


def items_of_test(test: str, sets: Sequence[SetData], segments: Sequence[Tuple[SetData, str, int]]) -> List[Item]:
    items = []
    for data, utt, n in segments:
        key = f"{utt}_spk{n + 1}"
        where = f"{data.references_path} (key {key})"
        items.append(Item(HIDDEN_REFERENCE, data.test_set, key, data.references[n][utt], where))
        if test == "smos" and len(data.references) > 1:
            other = (n + 1) % len(data.references)
            anchor = data.references[other].get(utt)
            items.append(Item(LOW_ANCHOR, data.test_set, key, anchor, f"{data.references_path} (key {utt}_spk{other + 1})"))
        elif utt in data.mixtures:
            items.append(Item(LOW_ANCHOR, data.test_set, key, data.mixtures[utt],
                              f"{data.mixtures_path} (key {utt})"))
        else:
            logger.warning("%s: mixture %s not found: no low anchor for %s", data.mixtures_path, utt, key)
        for system in speech_systems(data.systems):
            per_speaker = data.speech.get(system.name)
            value = per_speaker[n].get(utt) if per_speaker and n < len(per_speaker) else None
            if value is None:
                logger.warning("%s: %s has no %s on %s (%s): not rated", test, system.name, key, data.test_set,
                               NOT_AVAILABLE)
                continue
            items.append(Item(system.name, data.test_set, key, value, f"{system.input_path(data.test_set)} (key {key})"))
    return items


# ----------------------------------------------------------------------------- page

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font-family: sans-serif; margin: 1em 2em; max-width: 60em; color: #222; }
.item { border: 1px solid #ccc; padding: 0.5em 1em; margin: 0.6em 0; }
.item.unrated-flag { border-color: #c00; background: #fff3f3; }
.item audio { width: 320px; vertical-align: middle; }
.scores label { margin-right: 1.2em; white-space: nowrap; }
#message { font-weight: bold; min-height: 1.5em; }
#message.error { color: #b00; }
#message.ok { color: #070; }
table.anchors td, table.anchors th { padding: 2px 8px; text-align: left; }
.hidden { display: none; }
</style></head><body>
<h1>__TITLE__</h1>
<section id="instructions">
<p>__QUESTION__</p>
<p>Use headphones in a quiet room. Listen to each recording completely (as often as you like),
then choose a score from 1 (lowest) to 5 (highest):</p>
<table class="anchors">__ANCHORS__</table>
__SMOS_NOTE__
</section>
<p><label>Listener id: <input id="listener" type="text" autocomplete="off"></label>
<button id="start" type="button">Start</button></p>
<div id="items"></div>
<p><button id="submit" type="button" class="hidden">Submit</button></p>
<p id="message" role="alert"></p>
<script>
"use strict";
var TEST = __TEST__;
var ITEMS = __ITEMS__;
var shownOrder = [];
var listenerId = "";

function hashString(text) {  // FNV-1a, 32 bit: the listener id seeds the order
  var h = 2166136261;
  for (var i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h >>> 0;
}
function mulberry32(seed) {
  return function () {
    seed = (seed + 0x6D2B79F5) >>> 0;
    var t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function shuffledIds(listener) {
  var ids = ITEMS.map(function (item) { return item.id; });
  var random = mulberry32(hashString(TEST + ":" + listener));
  for (var i = ids.length - 1; i > 0; i--) {
    var j = Math.floor(random() * (i + 1));
    var t = ids[i]; ids[i] = ids[j]; ids[j] = t;
  }
  return ids;
}
function say(text, kind) {
  var m = document.getElementById("message");
  m.textContent = text;
  m.className = kind;
}
function player(src) {
  var audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "metadata";
  audio.src = src;
  return audio;
}
function render() {
  listenerId = document.getElementById("listener").value.trim();
  if (!listenerId) { say("Please enter your listener id first.", "error"); return; }
  var byId = {};
  ITEMS.forEach(function (item) { byId[item.id] = item; });
  shownOrder = shuffledIds(listenerId);
  var box = document.getElementById("items");
  box.textContent = "";
  shownOrder.forEach(function (id, index) {
    var item = byId[id];
    var div = document.createElement("div");
    div.className = "item";
    div.id = "item-" + id;
    var title = document.createElement("h3");
    title.textContent = "Recording " + (index + 1) + " of " + shownOrder.length;
    div.appendChild(title);
    if (item.reference) {
      var ref = document.createElement("p");
      ref.appendChild(document.createTextNode("Reference: "));
      ref.appendChild(player(item.reference));
      div.appendChild(ref);
    }
    var rated = document.createElement("p");
    rated.appendChild(document.createTextNode(item.reference ? "Rated speech: " : "Speech: "));
    rated.appendChild(player(item.audio));
    div.appendChild(rated);
    var scores = document.createElement("p");
    scores.className = "scores";
    [1, 2, 3, 4, 5].forEach(function (score) {
      var label = document.createElement("label");
      var input = document.createElement("input");
      input.type = "radio";
      input.name = "score-" + id;
      input.value = String(score);
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + score));
      scores.appendChild(label);
    });
    div.appendChild(scores);
    box.appendChild(div);
  });
  document.getElementById("listener").disabled = true;
  document.getElementById("start").disabled = true;
  document.getElementById("submit").classList.remove("hidden");
  say("", "");
}
function scoreOf(id) {
  var checked = document.querySelector('input[name="score-' + id + '"]:checked');
  return checked ? parseInt(checked.value, 10) : null;
}
function submit() {
  if (!listenerId || shownOrder.length === 0) { say("Please enter your listener id and press Start.", "error"); return; }
  var missing = [];
  shownOrder.forEach(function (id, index) {
    var div = document.getElementById("item-" + id);
    if (scoreOf(id) === null) { missing.push(index + 1); div.classList.add("unrated-flag"); }
    else { div.classList.remove("unrated-flag"); }
  });
  if (missing.length > 0) {
    say("Not submitted: " + missing.length + " recording(s) are not rated yet (number " +
        missing.slice(0, 10).join(", ") + (missing.length > 10 ? ", ..." : "") + ").", "error");
    return;
  }
  var ratings = ITEMS.map(function (item) {
    return {item: item.id, system: item.system, set: item.set, key: item.key, score: scoreOf(item.id)};
  });
  var result = {test: TEST, listener: listenerId, ratings: ratings, order: shownOrder,
                user_agent: navigator.userAgent, time: new Date().toISOString()};
  var blob = new Blob([JSON.stringify(result, null, 1)], {type: "application/json"});
  var a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = TEST + "_" + listenerId.replace(/[^A-Za-z0-9_-]/g, "_") + ".json";
  document.body.appendChild(a);
  a.click();
  document.body.removeChild(a);
  say("Thank you! Your ratings were saved as " + a.download + ": please send that file back.", "ok");
}
document.getElementById("start").addEventListener("click", render);
document.getElementById("submit").addEventListener("click", submit);
</script>
</body></html>
"""


def render_page(test: str, items: Sequence[Mapping[str, Any]]) -> str:
    question, anchors = ANCHORS[test]
    rows = "".join(f"<tr><th>{score}</th><td>{html.escape(anchors[score])}</td></tr>"
                   for score in sorted(anchors, reverse=True))
    note = ("<p>Each recording comes with a reference recording: rate whether the two are the same "
            "speaker.</p>" if test == "smos" else "")
    page = PAGE
    for name, value in (("__TITLE__", html.escape(TITLES[test])), ("__QUESTION__", html.escape(question)),
                        ("__ANCHORS__", rows), ("__SMOS_NOTE__", note), ("__TEST__", script_json(test)),
                        ("__ITEMS__", script_json(list(items)))):
        page = page.replace(name, value)
    return page


def make_mos(options: MosOptions) -> Dict[str, Path]:
    """Write nmos.html and smos.html with their audio; returns the pages by test."""
    sets = load_sets(options)
    clash = [s.name for s in sets[0].systems if s.name in CONTROLS]
    if clash:
        raise ValueError(f"{options.manifest}: system name '{clash[0]}' is reserved for the listening test's controls")
    segments = draw_segments(sets, options.num_utterances, options.seed)
    outdir = Path(options.outdir)
    rng = random.Random(options.seed + 1)
    with staged_dir(outdir, options.overwrite) as tmp:
        copies: Dict[str, str] = {}  # wav.scp value -> its copy, so a file used twice is copied once
        counter = [0]

        def copy(value: str, where: str) -> str:
            if value not in copies:
                counter[0] += 1
                name = f"audio/a{counter[0]:04d}.wav"
                write_pcm16(value, where, tmp / name)
                copies[value] = name
            return copies[value]

        for test in TESTS:
            items = items_of_test(test, sets, segments)
            rng.shuffle(items)
            embedded = []
            for index, item in enumerate(items, 1):
                entry = {"id": f"{test[0]}{index:03d}", "system": item.system, "set": item.test_set, "key": item.key,
                         "audio": copy(item.audio, item.where)}
                if test == "smos":
                    data = next(d for d in sets if d.test_set == item.test_set)
                    utt, _, n = item.key.rpartition("_spk")
                    entry["reference"] = copy(data.references[int(n) - 1][utt], f"{data.references_path} (key {item.key})")
                embedded.append(entry)
            (tmp / f"{test}.html").write_text(render_page(test, embedded), encoding="utf-8")
            logger.info("%s: %d items (%d segments)", test, len(items), len(segments))
    return {test: outdir / f"{test}.html" for test in TESTS}


# ----------------------------------------------------------------------------- aggregation


class ResultsError(ValueError):
    """A malformed listening-test results file; the message names it."""


@dataclass(frozen=True)
class Rating:
    test: str
    listener: str
    system: str
    key: str
    score: int


@dataclass(frozen=True)
class SystemScore:
    test: str
    system: str
    mean: float
    ci95: float  # half-width; nan with a single rating
    n_ratings: int
    n_listeners: int


def _require(condition: bool, path: PathLike, what: str) -> None:
    if not condition:
        raise ResultsError(f"{path}: {what} (not a results file of make_mos' pages?)")


def read_results(path: PathLike) -> List[Rating]:
    """The ratings of one downloaded results file, every field checked."""
    path = Path(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from exc
    _require(isinstance(data, dict), path, "not a JSON object")
    _require(data.get("test") in TESTS, path, f"'test' is {data.get('test')!r}, not one of {', '.join(TESTS)}")
    listener = data.get("listener")
    _require(isinstance(listener, str) and listener.strip() != "", path, "'listener' is missing or empty")
    ratings = data.get("ratings")
    _require(isinstance(ratings, list) and ratings, path, "'ratings' is missing or empty")
    out, seen = [], set()
    for index, rating in enumerate(ratings):
        where = f"rating {index + 1}"
        _require(isinstance(rating, dict), path, f"{where} is not an object")
        for name in ("item", "system", "key"):
            _require(isinstance(rating.get(name), str) and rating[name] != "", path, f"{where}: '{name}' is missing")
        score = rating.get("score")
        _require(isinstance(score, int) and not isinstance(score, bool) and score in SCORES, path,
                 f"{where} (item {rating['item']}): score {score!r} is not an integer 1-5")
        _require(rating["item"] not in seen, path, f"{where}: item {rating['item']} is rated twice")
        seen.add(rating["item"])
        out.append(Rating(data["test"], listener, rating["system"], rating["key"], score))
    return out


def t_interval(scores: Sequence[float]) -> float:
    """Half-width of the t-based 95 % interval of the mean (nan for fewer than two scores)."""
    from scipy.stats import t

    n = len(scores)
    if n < 2:
        return math.nan
    mean = sum(scores) / n
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    return float(t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def _system_order(systems: Sequence[str]) -> List[str]:
    others = [s for s in dict.fromkeys(systems) if s not in CONTROLS]
    return ([HIDDEN_REFERENCE] if HIDDEN_REFERENCE in systems else []) + others + (
        [LOW_ANCHOR] if LOW_ANCHOR in systems else [])


def aggregate(paths: Sequence[PathLike]) -> Tuple[List[SystemScore], List[str]]:
    """(per test and system scores, warnings) of results files."""
    ratings: List[Rating] = []
    owner: Dict[Tuple[str, str], Path] = {}
    for path in paths:
        file_ratings = read_results(path)
        test, listener = file_ratings[0].test, file_ratings[0].listener
        if (test, listener) in owner:
            raise ResultsError(f"{path}: listener '{listener}' already has {test} results in "
                               f"{owner[test, listener]}: keep one of the two files")
        owner[test, listener] = Path(path)
        ratings += file_ratings
    scores, warnings = [], []
    for test in TESTS:
        of_test = [r for r in ratings if r.test == test]
        for system in _system_order([r.system for r in of_test]):
            values = [r.score for r in of_test if r.system == system]
            scores.append(SystemScore(test, system, sum(values) / len(values), t_interval(values), len(values),
                                      len({r.listener for r in of_test if r.system == system})))
        for listener in sorted({r.listener for r in of_test}):
            means = {}
            for control in CONTROLS:
                values = [r.score for r in of_test if r.listener == listener and r.system == control]
                means[control] = sum(values) / len(values) if values else None
            if None not in means.values() and means[HIDDEN_REFERENCE] < means[LOW_ANCHOR]:
                warnings.append(f"{test}: listener '{listener}' ({owner[test, listener]}) rated the hidden reference "
                                f"({means[HIDDEN_REFERENCE]:.2f}) below the low anchor ({means[LOW_ANCHOR]:.2f}) "
                                f"on average: check this listener")
    return scores, warnings


def _ci(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def format_scores(scores: Sequence[SystemScore]) -> str:
    """Plain text, one line per test and system."""
    rows = [("test", "system", "MOS", "95% CI", "ratings", "listeners")]
    rows += [(s.test.upper(), s.system, f"{s.mean:.2f}", f"± {_ci(s.ci95)}", str(s.n_ratings), str(s.n_listeners))
             for s in scores]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def results_section(scores: Sequence[SystemScore]) -> str:
    lines = [RESULTS_SECTION, "",
             "Mean opinion score (1-5) ± the t-based 95 % confidence interval over all ratings. "
             f"`{HIDDEN_REFERENCE}`: the clean reference; `{LOW_ANCHOR}`: the mixture (NMOS), another "
             "speaker's clean reference (SMOS).", ""]
    for test in TESTS:
        of_test = [s for s in scores if s.test == test]
        if not of_test:
            continue
        lines += [f"### {test.upper()}", "", "| system | MOS | 95 % CI | ratings | listeners |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {_md(s.system)} | {s.mean:.2f} | ± {_ci(s.ci95)} | {s.n_ratings} | {s.n_listeners} |"
                  for s in of_test]
        lines.append("")
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """`text` with its listening-test section (up to the next `## ` heading) replaced, or appended."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == RESULTS_SECTION), None)
    if start is None:
        head = text.rstrip("\n")
        return (head + "\n\n" if head else "") + section.rstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^##\s", lines[i])), len(lines))
    kept_after = lines[end:]
    new = lines[:start] + section.rstrip("\n").split("\n") + ([""] + kept_after if kept_after else [])
    return "\n".join(new) + "\n"


def write_results_section(path: PathLike, scores: Sequence[SystemScore]) -> None:
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    with atomic_path(path) as tmp:
        tmp.write_text(replace_section(old, results_section(scores)), encoding="utf-8")


def mos_aggregate(results: Sequence[PathLike], results_md: Optional[PathLike] = None) -> str:
    """Print (and return) the scores; warn on suspicious listeners; update RESULTS.md if asked."""
    if not results:
        raise ResultsError("no results files given")
    scores, warnings = aggregate(results)
    for warning in warnings:
        logger.warning("%s", warning)
    text = format_scores(scores)
    print(text, end="")
    if results_md is not None:
        write_results_section(results_md, scores)
        logger.info("wrote the listening-test section of %s", results_md)
    return text
