"""Stage 14's demo page: researchers judge separation by ear, so every system's output is put
beside the mixture and the references, as a static folder that any web server (or file://) shows.

    python -m sepalm_espnet.bin.make_demo --manifest exp/systems.tsv --test_sets test \\
        --mixture_dir "dump/raw/{set}" --reference_dir "exp/sep_x/decode/{set}" --outdir exp/demo

`<outdir>/index.html` links only to `audio/` (16-bit PCM WAV copies) and `img/` (log-mel
spectrogram PNGs) beside it, by relative paths. Per test set it shows the first
`num_utterances` mixture keys in sorted order: the mixture, each speaker's reference
(`<reference_dir>/ref.scp`, flat keys `<utt>_spk<n>`), the output of every speech system of the
manifest, the per-utterance metrics of each speech system whose `score/metrics.tsv` exists
(metrics.separation: means over the utterance's speakers), and per speaker the ground truth
(`<reference_dir>/text`) with each transcript system's text, its word errors marked
(`<del>`: a reference word it lost or replaced, `<ins>`: a word it inserted or replaced it with).
Words are compared upper-cased without surrounding punctuation and shown as written.

A system (or reference file) missing on a test set is logged and shown as "not available".
The page is built in a temporary folder beside `outdir` and renamed into place; an existing
non-empty `outdir` is refused unless `overwrite` is true (then replaced as a whole).
"""
from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import re
import shutil
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

import numpy as np

from sepalm_espnet.data.audio import write_audio
from sepalm_espnet.data.format import convert_audio, load_scp_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_kv, read_text
from sepalm_espnet.data.speakers import SPEAKER_KEY, unflatten
from sepalm_espnet.metrics.separation import METRIC_NAMES, METRICS_FILE, read_scores
from sepalm_espnet.metrics.systems import (
    SET_FIELD,
    TRANSCRIPT_MODE,
    System,
    SystemsInputs,
    read_systems,
    reference_template,
)

logger = logging.getLogger(__name__)

NOT_AVAILABLE = "not available"
MEL_BANDS = 80
MEL_FLOOR_DB = 80.0  # dynamic range shown: quieter bins are clipped to black


@dataclass
class DemoOptions(SystemsInputs):
    """Options of bin/make_demo.py (one --<field> each; the defaults live here only)."""

    outdir: str = field(default="exp/demo", metadata={"help": "the demo folder (index.html, audio/, img/)"})
    num_utterances: int = field(default=8, metadata={"help": "mixtures per test set (the first keys, sorted)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty outdir"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_utterances < 1:
            raise ValueError(f"num_utterances {self.num_utterances}: must be at least 1")


# ----------------------------------------------------------------------------- inputs


def speaker_count(entries: Mapping[str, str], where: PathLike) -> int:
    """N of flat `<utt>_spk<n>` keys (unflatten then checks every utterance has all N)."""
    n_spk = 0
    for key in entries:
        match = SPEAKER_KEY.match(key)
        if match is None:
            raise DataDirError(f"{where}: key '{key}' is not <utterance>_spk<n>")
        n_spk = max(n_spk, int(match["n"]))
    return n_spk


def read_flat(path: Path, text: bool = False) -> Optional[List[Dict[str, str]]]:
    """A flat file split per speaker ([spk1 {utt: value}, ...]); None (logged) if it is missing."""
    if not path.is_file():
        return None
    entries = read_text(path) if text else read_kv(path)
    n_spk = speaker_count(entries, path)
    return unflatten(entries, n_spk, str(path)) if n_spk else []


@dataclass
class SetData:
    """What the pages show of one test set; None where an input is missing."""

    test_set: str
    mixtures: Dict[str, str]  # utt -> wav.scp value
    mixtures_path: Path
    references: Optional[List[Dict[str, str]]]  # per speaker: utt -> value
    references_path: Path
    ground_truth: Optional[List[Dict[str, str]]]
    ground_truth_path: Path
    speech: Dict[str, Optional[List[Dict[str, str]]]]  # system name -> per speaker, None: missing
    transcripts: Dict[str, Optional[List[Dict[str, str]]]]
    scores: Dict[str, Optional[Dict[str, Mapping[str, float]]]]  # system -> utt -> metric -> value
    systems: List[System]

    @property
    def n_spk(self) -> int:
        return len(self.references) if self.references else 0


def _missing(what: str, path: Path, test_set: str) -> None:
    logger.warning("%s: %s not found on test set %s: shown as %s", what, path, test_set, NOT_AVAILABLE)


def load_set(inputs: SystemsInputs, systems: Sequence[System], reference_dir: str, test_set: str) -> SetData:
    mixtures_path = Path(inputs.mixture_dir.replace(SET_FIELD, test_set)) / "wav.scp"
    mixtures = read_kv(mixtures_path) if mixtures_path.is_file() else {}
    if not mixtures:
        _missing("mixtures", mixtures_path, test_set)
    refs = Path(reference_dir.replace(SET_FIELD, test_set))
    references = read_flat(refs / "ref.scp")
    if references is None:
        _missing("references", refs / "ref.scp", test_set)
    ground_truth = read_flat(refs / "text", text=True)
    if ground_truth is None:
        _missing("ground truth", refs / "text", test_set)
    data = SetData(test_set, mixtures, mixtures_path, references, refs / "ref.scp", ground_truth, refs / "text",
                   {}, {}, {}, list(systems))
    for system in systems:
        path = system.input_path(test_set)
        flat = read_flat(path, text=system.mode == TRANSCRIPT_MODE)
        if flat is None:
            _missing(f"system '{system.name}'", path, test_set)
        if system.mode == TRANSCRIPT_MODE:
            data.transcripts[system.name] = flat
            continue
        data.speech[system.name] = flat
        metrics = system.score_dir(test_set) / METRICS_FILE
        data.scores[system.name] = ({s.key: s.metrics for s in read_scores(metrics.parent)}
                                    if flat is not None and metrics.is_file() else None)
    return data


def speech_systems(systems: Sequence[System]) -> List[System]:
    return [s for s in systems if s.is_speech]


# ----------------------------------------------------------------------------- media


def write_pcm16(value: str, where: str, target: Path) -> Tuple[np.ndarray, int]:
    """A wav.scp value (file or pipe) as a mono 16-bit WAV, which every browser plays; returns it."""
    data, fs = load_scp_audio(value, where)
    data = convert_audio(data, fs, fs, where)
    write_audio(target, data, fs)
    return data, fs


def write_spectrogram(signal: np.ndarray, fs: int, target: Path) -> None:
    """Log-mel image (time left to right, low bands at the bottom), one dB scale per image."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image

    n_fft = 1 << int(np.ceil(np.log2(0.032 * fs)))  # 32 ms windows, 512 at 16 kHz
    mel = librosa.feature.melspectrogram(y=np.asarray(signal, dtype=np.float32), sr=fs, n_fft=n_fft,
                                         hop_length=n_fft // 4, n_mels=MEL_BANDS, power=2.0)
    db = librosa.power_to_db(mel, ref=np.max(mel) if np.max(mel) > 0 else 1.0, top_db=MEL_FLOOR_DB)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.imsave(str(target), db, cmap="magma", origin="lower", vmin=-MEL_FLOOR_DB, vmax=0.0, format="png")


def safe_name(text: str) -> str:
    """A file-name part made from a system or set name (which may hold spaces, parentheses, ...)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def link(path: str) -> str:
    """A relative URL of a path under the page's folder, escaped for an HTML attribute."""
    return html.escape(quote(path), quote=True)


class MediaWriter:
    """Writes one audio copy + spectrogram per input under `root`; returns the HTML of its player."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def player(self, value: str, where: str, name: str, label: str) -> str:
        audio, img = f"audio/{name}.wav", f"img/{name}.png"
        signal, fs = write_pcm16(value, where, self.root / audio)
        write_spectrogram(signal, fs, self.root / img)
        self.count += 1
        return (f'<figure class="media"><audio controls preload="metadata" src="{link(audio)}"></audio>'
                f'<img src="{link(img)}" alt="log-mel spectrogram of {html.escape(label, quote=True)}">'
                f'<figcaption>{len(signal) / fs:.2f} s</figcaption></figure>')


# ----------------------------------------------------------------------------- transcripts


def _norm(word: str) -> str:
    return word.strip(string.punctuation + "“”‘’").upper() or word.upper()


def word_diff(reference: str, hypothesis: str) -> Tuple[str, Dict[str, int]]:
    """HTML of `hypothesis` with its word errors against `reference` marked, and the counts."""
    import jiwer

    ref, hyp = reference.split(), hypothesis.split()
    counts = {"substitutions": 0, "deletions": 0, "insertions": 0, "ref_words": len(ref)}
    if not ref and not hyp:
        return "", counts
    if not ref or not hyp:
        chunks = [("insert", 0, 0, 0, len(hyp))] if hyp else [("delete", 0, len(ref), 0, 0)]
    else:
        out = jiwer.process_words(" ".join(map(_norm, ref)), " ".join(map(_norm, hyp)))
        chunks = [(c.type, c.ref_start_idx, c.ref_end_idx, c.hyp_start_idx, c.hyp_end_idx) for c in out.alignments[0]]
    parts = []
    for kind, r0, r1, h0, h1 in chunks:
        ref_words = html.escape(" ".join(ref[r0:r1]))
        hyp_words = html.escape(" ".join(hyp[h0:h1]))
        if kind == "equal":
            parts.append(hyp_words)
        elif kind == "substitute":
            counts["substitutions"] += r1 - r0
            parts.append(f'<del class="sub">{ref_words}</del> <ins class="sub">{hyp_words}</ins>')
        elif kind == "delete":
            counts["deletions"] += r1 - r0
            parts.append(f'<del class="del">{ref_words}</del>')
        else:
            counts["insertions"] += h1 - h0
            parts.append(f'<ins class="ins">{hyp_words}</ins>')
    return " ".join(parts), counts


def _wer_text(counts: Mapping[str, int]) -> str:
    errors = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    rate = f"{100.0 * errors / counts['ref_words']:.1f} %" if counts["ref_words"] else "n/a"
    return (f"WER {rate} ({counts['substitutions']} sub, {counts['deletions']} del, "
            f"{counts['insertions']} ins)")


# ----------------------------------------------------------------------------- page

PAGE_CSS = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
figure.media { margin: 0; }
figure.media audio { width: 260px; display: block; }
figure.media img { width: 260px; height: 80px; display: block; image-rendering: pixelated; }
figure.media figcaption { font-size: 80%; color: #666; }
.na { color: #999; font-style: italic; }
del { background: #fdd; color: #900; }
ins { background: #dfd; color: #060; text-decoration: none; font-weight: bold; }
del.sub { background: #fec; color: #840; }
ins.sub { background: #ffe9a8; color: #630; }
.mode { font-weight: normal; color: #666; font-size: 85%; }
.legend span { margin-right: 1.5em; }
article.utt { border-top: 2px solid #888; margin-top: 1.5em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def _na(what: str = NOT_AVAILABLE) -> str:
    return f'<span class="na">{html.escape(what)}</span>'


def _metric(value: float) -> str:
    return "nan" if np.isnan(value) else f"{value:.2f}"


class DemoBuilder:
    def __init__(self, root: Path):
        self.media = MediaWriter(root)

    def utterance(self, data: SetData, utt: str) -> str:
        s = data.test_set
        base = f"{safe_name(s)}/{utt}"
        esc = html.escape
        parts = [f'<article class="utt" id="{esc(safe_name(s) + "-" + utt, quote=True)}" data-key="{esc(utt, quote=True)}">',
                 f"<h3>{esc(utt)}</h3>", '<table class="audio">']
        n_spk = max(data.n_spk, 1)
        mixture = data.mixtures.get(utt)
        cell = (self.media.player(mixture, f"{data.mixtures_path} (key {utt})", f"{base}/mixture", f"mixture {utt}")
                if mixture is not None else _na())
        parts.append(f'<tr data-system="mixture"><th>Mixture</th><td colspan="{n_spk}">{cell}</td></tr>')
        parts.append("<tr><th></th>" + "".join(f"<th>Speaker {n}</th>" for n in range(1, n_spk + 1)) + "</tr>")
        rows = [("reference", "reference", "Reference", "", data.references, data.references_path)]
        rows += [(f"sys{i:02d}_{safe_name(sys_.name)}", sys_.name, sys_.name, sys_.mode, data.speech[sys_.name],
                  sys_.input_path(s)) for i, sys_ in enumerate(data.systems) if sys_.is_speech]
        for folder, row_id, label, mode, per_speaker, path in rows:
            cells = []
            for n in range(n_spk):
                value = per_speaker[n].get(utt) if per_speaker and n < len(per_speaker) else None
                if value is None:
                    cells.append(f"<td>{_na()}</td>")
                    continue
                key = f"{utt}_spk{n + 1}"
                cells.append("<td>" + self.media.player(value, f"{path} (key {key})", f"{base}/{folder}/spk{n + 1}",
                                                        f"{label} {key}") + "</td>")
            mode_html = f' <span class="mode">({esc(mode)})</span>' if mode else ""
            parts.append(f'<tr data-system="{esc(row_id, quote=True)}"><th>{esc(label)}{mode_html}</th>'
                         + "".join(cells) + "</tr>")
        parts.append("</table>")
        parts.append(self.metrics_table(data, utt))
        parts.append(self.transcript_table(data, utt, n_spk))
        parts.append("</article>")
        return "\n".join(parts)

    @staticmethod
    def metrics_table(data: SetData, utt: str) -> str:
        esc = html.escape
        rows = []
        for system in speech_systems(data.systems):
            scores = data.scores.get(system.name)
            if scores is None or utt not in scores:
                why = "not scored" if data.speech.get(system.name) is not None else NOT_AVAILABLE
                cells = f'<td colspan="{len(METRIC_NAMES)}">{_na(why)}</td>'
            else:
                cells = "".join(f'<td class="num">{_metric(scores[utt][m])}</td>' for m in METRIC_NAMES)
            rows.append(f'<tr data-system="{esc(system.name, quote=True)}"><th>{esc(system.name)}</th>{cells}</tr>')
        if not rows:
            return ""
        header = "<tr><th>system</th>" + "".join(f"<th>{esc(m)}</th>" for m in METRIC_NAMES) + "</tr>"
        return ('<table class="metrics"><caption>Metrics of this mixture (means over its speakers)</caption>'
                + header + "".join(rows) + "</table>")

    @staticmethod
    def transcript_table(data: SetData, utt: str, n_spk: int) -> str:
        esc = html.escape
        transcript_systems = [s for s in data.systems if s.mode == TRANSCRIPT_MODE]
        if data.ground_truth is None and not transcript_systems:
            return ""
        parts = ['<table class="text"><caption>Transcripts</caption>']
        for n in range(n_spk):
            key = f"{utt}_spk{n + 1}"
            truth = data.ground_truth[n].get(utt) if data.ground_truth and n < len(data.ground_truth) else None
            parts.append(f'<tr data-system="ground_truth" data-key="{esc(key, quote=True)}"><th>Speaker {n + 1}: '
                         f'ground truth</th><td class="truth">{esc(truth) if truth is not None else _na()}</td>'
                         f'<td></td></tr>')
            for system in transcript_systems:
                texts = data.transcripts.get(system.name)
                text = texts[n].get(utt) if texts and n < len(texts) else None
                if text is None:
                    cell, info = _na(), ""
                elif truth is None:
                    cell, info = esc(text), ""
                else:
                    cell, counts = word_diff(truth, text)
                    info = esc(_wer_text(counts))
                parts.append(f'<tr data-system="{esc(system.name, quote=True)}" data-key="{esc(key, quote=True)}">'
                             f'<th>{esc(system.name)}</th><td class="hyp">{cell}</td><td>{info}</td></tr>')
        parts.append("</table>")
        return "".join(parts)

    def page(self, sets: Sequence[SetData], options: DemoOptions) -> str:
        esc = html.escape
        body = []
        nav = " | ".join(f'<a href="#set-{esc(safe_name(d.test_set), quote=True)}">{esc(d.test_set)}</a>'
                         for d in sets)
        for data in sets:
            body.append(f'<section id="set-{esc(safe_name(data.test_set), quote=True)}" '
                        f'data-set="{esc(data.test_set, quote=True)}"><h2>Test set {esc(data.test_set)}</h2>')
            loaded = {**data.speech, **data.transcripts}
            unavailable = [(s.name, s.input_path(data.test_set)) for s in data.systems if loaded[s.name] is None]
            for label, value, path in (("references", data.references, data.references_path),
                                       ("ground truth", data.ground_truth, data.ground_truth_path)):
                if value is None:
                    unavailable.append((label, path))
            if not data.mixtures:
                unavailable.append(("mixtures", data.mixtures_path))
            if unavailable:
                body.append('<ul class="unavailable">' + "".join(
                    f'<li data-system="{esc(name, quote=True)}">{esc(name)}: {_na()} '
                    f'(<code>{esc(str(path))}</code> not found)</li>' for name, path in unavailable) + "</ul>")
            for utt in sorted(data.mixtures)[: options.num_utterances]:
                body.append(self.utterance(data, utt))
            body.append("</section>")
        systems = "".join(f"<li>{esc(s.name)} <span class=\"mode\">({esc(s.mode)})</span></li>"
                          for s in (sets[0].systems if sets else []))
        legend = ('<p class="legend">Transcripts: <span><del class="del">deleted</del> reference word</span>'
                  '<span><del class="sub">replaced</del> <ins class="sub">by</ins> (substitution)</span>'
                  '<span><ins class="ins">inserted</ins> word</span></p>')
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<title>SepALM demo</title><style>" + PAGE_CSS + "</style></head><body>\n"
                "<h1>SepALM separation demo</h1>\n"
                f"<p>Systems of <code>{esc(options.manifest)}</code>:</p><ul>{systems}</ul>\n"
                f"{legend}\n<p>Test sets: {nav}</p>\n" + "\n".join(body) + "\n</body></html>\n")


# ----------------------------------------------------------------------------- output folder


def check_outdir(outdir: Path, overwrite: bool) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"{outdir}: exists and is not a folder")
    if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
        raise ValueError(f"{outdir}: exists and is not empty (give --overwrite true to replace it)")


@contextlib.contextmanager
def staged_dir(outdir: PathLike, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside `outdir`, renamed to it only if the block succeeds (the old
    folder, with --overwrite, is removed only then): a killed run leaves no half page."""
    outdir = Path(outdir)
    check_outdir(outdir, overwrite)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=outdir.parent, prefix=f".{outdir.name}."))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if outdir.exists():
            old = Path(tempfile.mkdtemp(dir=outdir.parent, prefix=f".{outdir.name}.old."))
            os.replace(outdir, old / outdir.name)
            os.replace(tmp, outdir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, outdir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def script_json(value) -> str:
    """JSON safe inside a <script> element (no `</script>`, `<!--` or `&` sequences)."""
    return (json.dumps(value, ensure_ascii=False, sort_keys=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def load_sets(inputs: SystemsInputs) -> List[SetData]:
    systems = read_systems(inputs.manifest)
    reference_dir = reference_template(inputs.reference_dir, systems, inputs.manifest)
    return [load_set(inputs, systems, reference_dir, test_set) for test_set in inputs.test_sets]


def make_demo(options: DemoOptions) -> Path:
    """Write the demo folder; returns its index.html."""
    sets = load_sets(options)
    outdir = Path(options.outdir)
    with staged_dir(outdir, options.overwrite) as tmp:
        builder = DemoBuilder(tmp)
        (tmp / "index.html").write_text(builder.page(sets, options), encoding="utf-8")
        logger.info("demo: %d players on %d test sets", builder.media.count, len(sets))
    logger.info("wrote %s", outdir / "index.html")
    return outdir / "index.html"
