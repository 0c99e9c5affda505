"""Mini LibriMix: the offline 2-speaker noisy (optionally reverberant) corpus that CI runs.

Everything comes from Debian packages and a seed: the same packages rebuild the same bytes.

text      Single sentences from `fortunes` / `fortunes-min`. Each sentence belongs to one pool,
          by a hash of its text: train, dev and test sources, and babble noise (held out).
speakers  Debian TTS voices (tts.py); train speakers are disjoint from dev/test speakers.
sources   LibriMix "min" mode: two utterances of different speakers and sentences, both starting
          at sample 0, truncated to the shorter. Each reference is scaled to TARGET_RMS_DBFS,
          then by +g/2 and -g/2 dB with the relative gain g uniform in [-5, 5] dB (all before
          the common anti-clipping scale below; a reverberant image gets its reference's gain).
noise     White, pink or brown Gaussian noise (spectrum shaped in the FFT domain) or babble (the sum
          of BABBLE_TALKERS TTS utterances of held-out sentences, looped), scaled to an SNR uniform
          in [-6, 3] dB, where SNR = 10 log10(sum((s1 + s2)^2) / sum(noise^2)) over the whole
          mixture and s1, s2 are the speech signals as they are in the mixture (the reverberant
          images with --reverb). The metadata records the SNR measured on the written int16 files.
reverb    WHAMR!-style, optional: a pyroomacoustics ShoeBox room per mixture, RT60 uniform in
          [0.2, 0.6] s, random dimensions, microphone and source positions. The mixture holds the
          reverberant images (s1_reverb/, s2_reverb/). The references s1/, s2/ stay anechoic: the
          dry source convolved with the direct path of the same room (the image-source model at
          order 0), i.e. the dry source delayed by distance / c and attenuated by 1 / (4 pi
          distance), so they are time-aligned and level-matched with the direct sound in the mix.

On disk, mix_both == s1 + s2 + noise holds per sample exactly (s1_reverb + s2_reverb + noise with
--reverb): all components are quantized to int16 with one common scale that keeps every file below
PEAK_LEVEL of full scale, and the mixture is written as their integer sum.

The random state of mixture i of split S derives from (seed, S, i) alone: changing n_train leaves
dev and test unchanged, and a corpus of k mixtures is the prefix of a larger one.

Layout, LibriMix-style, with mixture ids `<uttid1>_<uttid2>` (utterance ids contain no '_'):
    <corpus_dir>/metadata/mixture_<split>_mix_both.csv
    <corpus_dir>/wav16k/min/<split>/{mix_both,s1,s2,noise[,s1_reverb,s2_reverb]}/<id>.wav
    <corpus_dir>/summary.txt, tts_cache/, options.json, .done
    <datadir>/<split>/{wav.scp,spk1.scp,spk2.scp,noise1.scp,utt2spk,spk2utt,text_spk1,text_spk2}
utt2spk maps each mixture to itself, as the other corpora's data dirs do (libri2mix_wham.py): a
mixture has two speakers, whose ids are in the metadata (source_1_speaker, source_2_speaker).
Transcripts are LibriSpeech-style: upper-case words, no punctuation but apostrophes.

Reruns: options.json records every option that shapes the content. The same options resume:
mixtures whose files all exist are kept, and a corpus marked .done is not touched. Other options
into an existing corpus_dir are refused, naming the differences: silently regenerating would
replace audio that trained models and scores refer to.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import numpy as np
from scipy.signal import fftconvolve

from sepalm_espnet.data.audio import read_audio, write_audio
from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path, read_kv
from sepalm_espnet.data.libri2mix_wham import MixtureEntry, write_separation_dir
from sepalm_espnet.data.tts import (
    DEBIAN_PACKAGES,
    EVAL_VOICES,
    TRAIN_VOICES,
    Voice,
    cache_path,
    engine_version,
    synthesize_cached,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when a code change alters the generated audio or metadata
DEFAULT_NJ = 2
SPLITS = ("train", "dev", "test")
SPLIT_VOICES = {"train": TRAIN_VOICES, "dev": EVAL_VOICES, "test": EVAL_VOICES}
# Sentence pools as shares of 100 hash buckets; "babble" sentences are never a source.
POOL_BUCKETS = {
    "train": range(0, 80), "dev": range(80, 88), "test": range(88, 96), "babble": range(96, 100),
}
FORTUNES_DIR = Path("/usr/share/games/fortunes")

TARGET_RMS_DBFS = -28.0
MAX_RELATIVE_GAIN_DB = 5.0
SNR_RANGE_DB = (-6.0, 3.0)
NOISE_TYPES = ("white", "pink", "brown", "babble")
# Power spectral density ~ 1 / f**exponent, flat below LOWEST_NOISE_HZ so that brown noise is
# not mostly inaudible sub-20 Hz drift counted as noise power.
NOISE_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}
LOWEST_NOISE_HZ = 20.0
BABBLE_TALKERS = 4
PEAK_LEVEL = 0.9
INT16_MAX = 32767

RT60_RANGE_S = (0.2, 0.6)
ROOM_LENGTH_RANGE_M = (5.0, 10.0)
ROOM_HEIGHT_RANGE_M = (2.6, 3.6)
WALL_MARGIN_M = 0.5
MIC_HEIGHT_RANGE_M = (1.0, 1.8)
SOURCE_HEIGHT_RANGE_M = (1.4, 1.9)
SOURCE_DISTANCE_RANGE_M = (0.75, 2.0)

# LibriMix's columns first; the reverb columns only in a reverberant corpus.
METADATA_COLUMNS = (
    "mixture_ID", "mixture_path", "source_1_path", "source_2_path", "noise_path", "length",
    "source_1_speaker", "source_2_speaker", "source_1_text", "source_2_text",
    "source_1_gain_db", "source_2_gain_db", "noise_type", "snr_db",
)
REVERB_METADATA_COLUMNS = (
    "source_1_reverb_path", "source_2_reverb_path", "rt60",
    "source_1_distance", "source_2_distance",
)

_WORD = r"[A-Za-z][a-z']*(?:-[A-Za-z][a-z']*)*"
# One sentence: capitalised words (no acronyms, which TTS would spell out), single spaces,
# optional , ; : after a word, one final . ! or ?
_SENTENCE = re.compile(rf"[A-Z][a-z']*(?:-[A-Za-z][a-z']*)*(?:[,;:]? {_WORD})*[.!?]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class CorpusOptionsError(ValueError):
    """An existing corpus or data dir was made with other options; the message names them."""


def _str2bool(value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class MiniLibriMixConfig:
    """Every option that shapes the corpus content (nj and paths do not)."""

    n_train: int = field(default=120, metadata={"help": "training mixtures"})
    n_dev: int = field(default=20, metadata={"help": "development mixtures"})
    n_test: int = field(default=20, metadata={"help": "test mixtures"})
    seed: int = field(default=0, metadata={"help": "random seed: the same seed, the same bytes"})
    fs: int = field(default=16000, metadata={"help": "sampling rate in Hz"})
    reverb: bool = field(default=False, metadata={"help": "WHAMR!-style reverberant mixtures"})
    # 7-14 words: mixtures (the shorter of two utterances) of about 2-4 s.
    min_words: int = field(default=7, metadata={"help": "shortest sentence, in words"})
    max_words: int = field(default=14, metadata={"help": "longest sentence, in words"})

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_dev, self.n_test) < 1:
            raise ValueError("n_train, n_dev and n_test must be at least 1")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, "
                             f"{self.max_words}")

    def size(self, split: str) -> int:
        return {"train": self.n_train, "dev": self.n_dev, "test": self.n_test}[split]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options generated from MiniLibriMixConfig, so defaults and help live in one place."""
    parser.add_argument("--corpus_dir", required=True, help="where the audio and metadata go")
    parser.add_argument("--datadir", default="data",
                        help="data dirs go to <datadir>/<split> (default: data)")
    parser.add_argument("--nj", type=int, default=DEFAULT_NJ,
                        help=f"parallel processes (default: {DEFAULT_NJ})")
    parser.add_argument("--fortunes_dir", default=str(FORTUNES_DIR),
                        help=f"the fortune files (default: {FORTUNES_DIR})")
    for option in dataclasses.fields(MiniLibriMixConfig):
        is_bool = option.type in (bool, "bool")
        default = str(option.default).lower() if is_bool else option.default
        parser.add_argument(f"--{option.name}", type=_str2bool if is_bool else int,
                            default=option.default, metavar="{true,false}" if is_bool else None,
                            help=f"{option.metadata['help']} (default: {default})")


def config_from_args(args: argparse.Namespace) -> MiniLibriMixConfig:
    names = [option.name for option in dataclasses.fields(MiniLibriMixConfig)]
    return MiniLibriMixConfig(**{name: getattr(args, name) for name in names})


# ----------------------------------------------------------------------------- text


def load_sentences(fortunes_dir: PathLike, min_words: int, max_words: int) -> List[str]:
    """Sorted, unique single sentences a TTS voice reads as written (no digits, no acronyms)."""
    fortunes_dir = Path(fortunes_dir)
    files = []
    if fortunes_dir.is_dir():
        files = sorted(p for p in fortunes_dir.iterdir() if p.is_file() and not p.suffix)
    if not files:
        raise FileNotFoundError(
            f"no fortune files in {fortunes_dir}: install the Debian packages 'fortunes-min' and "
            f"'fortunes' (apt-get install fortunes-min fortunes)")
    sentences = set()
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for entry in re.split(r"^%$", text, flags=re.MULTILINE):
            for sentence in _SENTENCE_END.split(" ".join(entry.split())):
                words = len(sentence.split())
                if min_words <= words <= max_words and _SENTENCE.fullmatch(sentence):
                    sentences.add(sentence)
    return sorted(sentences)


def transcript(sentence: str) -> str:
    """LibriSpeech style: upper-case words, hyphens split, punctuation dropped but apostrophes."""
    return " ".join(re.findall(r"[A-Za-z']+", sentence)).upper()


def sentence_key(sentence: str) -> str:
    return hashlib.sha1(sentence.encode("utf-8")).hexdigest()[:10]


def split_sentence_pools(sentences: Sequence[str]) -> Dict[str, List[str]]:
    """Pools by a hash of the text, so a sentence stays in its pool whatever the seed or sizes."""
    pools: Dict[str, List[str]] = {name: [] for name in POOL_BUCKETS}
    for sentence in sentences:
        bucket = int(sentence_key(sentence), 16) % 100
        pool = next(name for name, buckets in POOL_BUCKETS.items() if bucket in buckets)
        pools[pool].append(sentence)
    for name, pool in pools.items():
        needed = BABBLE_TALKERS if name == "babble" else 2
        if len(pool) < needed:
            raise ValueError(f"only {len(pool)} sentences in the {name} pool "
                             f"({len(sentences)} in all): widen --min_words/--max_words")
    return pools


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Utterance:
    voice: Voice
    sentence: str

    @property
    def utt_id(self) -> str:
        return f"{self.voice.speaker_id}-{sentence_key(self.sentence)}"


@dataclass(frozen=True)
class Room:
    rt60: float
    dims: Tuple[float, float, float]
    mic: Tuple[float, float, float]
    sources: Tuple[Tuple[float, float, float], Tuple[float, float, float]]

    def distance(self, source: int) -> float:
        return float(np.linalg.norm(np.subtract(self.sources[source], self.mic)))


@dataclass(frozen=True)
class MixturePlan:
    """Everything random about one mixture, drawn before any audio exists."""

    split: str
    sources: Tuple[Utterance, Utterance]
    gains_db: Tuple[float, float]
    snr_db: float
    noise_type: str
    noise_seed: int
    babble: Tuple[Utterance, ...]
    room: Optional[Room]

    @property
    def mixture_id(self) -> str:
        return f"{self.sources[0].utt_id}_{self.sources[1].utt_id}"


def sample_room(rng: np.random.Generator) -> Room:
    dims = np.array([rng.uniform(*ROOM_LENGTH_RANGE_M), rng.uniform(*ROOM_LENGTH_RANGE_M),
                     rng.uniform(*ROOM_HEIGHT_RANGE_M)])
    rt60 = rng.uniform(*RT60_RANGE_S)
    mic = np.array([rng.uniform(WALL_MARGIN_M, dims[0] - WALL_MARGIN_M),
                    rng.uniform(WALL_MARGIN_M, dims[1] - WALL_MARGIN_M),
                    rng.uniform(*MIC_HEIGHT_RANGE_M)])
    sources = []
    for _ in range(2):
        azimuth = rng.uniform(0.0, 2.0 * np.pi)
        distance = rng.uniform(*SOURCE_DISTANCE_RANGE_M)
        position = np.array([mic[0] + distance * np.cos(azimuth),
                             mic[1] + distance * np.sin(azimuth),
                             rng.uniform(*SOURCE_HEIGHT_RANGE_M)])
        position = np.clip(position, WALL_MARGIN_M, dims - WALL_MARGIN_M)
        sources.append(tuple(float(x) for x in position))
    return Room(float(rt60), tuple(float(x) for x in dims), tuple(float(x) for x in mic),
                tuple(sources))


def plan_mixture(config: MiniLibriMixConfig, split: str, index: int, attempt: int,
                 pools: Mapping[str, Sequence[str]]) -> MixturePlan:
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index, attempt])
    voices = SPLIT_VOICES[split]
    pool = pools[split]
    first_voice, second_voice = rng.choice(len(voices), 2, replace=False)
    first_sentence, second_sentence = rng.choice(len(pool), 2, replace=False)
    relative_gain_db = rng.uniform(-MAX_RELATIVE_GAIN_DB, MAX_RELATIVE_GAIN_DB)
    snr_db = rng.uniform(*SNR_RANGE_DB)
    noise_type = NOISE_TYPES[rng.integers(len(NOISE_TYPES))]
    noise_seed = int(rng.integers(2**32))
    babble: Tuple[Utterance, ...] = ()
    if noise_type == "babble":
        babble = tuple(Utterance(voices[rng.integers(len(voices))], pools["babble"][i])
                       for i in rng.choice(len(pools["babble"]), BABBLE_TALKERS, replace=False))
    # Drawn last, so the reverberant corpus has the same sentences, gains and noise as the dry one.
    room = sample_room(rng) if config.reverb else None
    return MixturePlan(
        split=split,
        sources=(Utterance(voices[first_voice], pool[first_sentence]),
                 Utterance(voices[second_voice], pool[second_sentence])),
        gains_db=(relative_gain_db / 2, -relative_gain_db / 2),
        snr_db=float(snr_db),
        noise_type=noise_type,
        noise_seed=noise_seed,
        babble=babble,
        room=room,
    )


def plan_corpus(config: MiniLibriMixConfig,
                sentences: Sequence[str]) -> Dict[str, List[MixturePlan]]:
    """A mixture id drawn twice is redrawn (attempt + 1); this depends only on earlier mixtures."""
    pools = split_sentence_pools(sentences)
    plans: Dict[str, List[MixturePlan]] = {}
    for split in SPLITS:
        plans[split], used = [], set()
        for index in range(config.size(split)):
            attempt = 0
            plan = plan_mixture(config, split, index, attempt, pools)
            while plan.mixture_id in used:
                attempt += 1
                plan = plan_mixture(config, split, index, attempt, pools)
            used.add(plan.mixture_id)
            plans[split].append(plan)
    return plans


# ----------------------------------------------------------------------------- audio


def power(signal: np.ndarray) -> float:
    return float(np.mean(np.square(signal, dtype=np.float64)))


def coloured_noise(noise_type: str, length: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.maximum(np.fft.rfftfreq(length, d=1.0 / fs), LOWEST_NOISE_HZ)
    noise = np.fft.irfft(spectrum / frequencies ** (NOISE_EXPONENT[noise_type] / 2), n=length)
    return noise / math.sqrt(power(noise))


def babble_noise(talkers: Sequence[Utterance], length: int, fs: int, cache_dir: Path,
                 rng: np.random.Generator) -> np.ndarray:
    """Equal-level talkers, each looped from a random offset to cover the mixture."""
    babble = np.zeros(length)
    for talker in talkers:
        speech = synthesize_cached(talker.voice, talker.sentence, fs, cache_dir).astype(np.float64)
        looped = np.resize(np.roll(speech, -int(rng.integers(len(speech)))), length)
        babble += looped / math.sqrt(power(looped))
    return babble


def room_impulse_responses(room: Room, fs: int,
                           max_order: Optional[int] = None) -> List[np.ndarray]:
    """Source-to-microphone RIRs; max_order=0 keeps only the direct path of the same room."""
    import pyroomacoustics as pra  # imported here: it costs a second and only --reverb needs it

    absorption, sabine_order = pra.inverse_sabine(room.rt60, room.dims)
    shoebox = pra.ShoeBox(list(room.dims), fs=fs, materials=pra.Material(absorption),
                          max_order=sabine_order if max_order is None else max_order)
    for position in room.sources:
        shoebox.add_source(list(position))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    return [np.asarray(rir, dtype=np.float64) for rir in shoebox.rir[0]]


def mix_components(plan: MixturePlan, fs: int, cache_dir: Path) -> Dict[str, np.ndarray]:
    """Float components; "s1"/"s2" are the references, "image1"/"image2" the speech in the mix."""
    dry = [synthesize_cached(u.voice, u.sentence, fs, cache_dir).astype(np.float64)
           for u in plan.sources]
    length = min(len(signal) for signal in dry)
    dry = [signal[:length] for signal in dry]
    if plan.room is None:
        references = images = dry
    else:
        reverberant, direct = (room_impulse_responses(plan.room, fs, order) for order in (None, 0))
        images = [fftconvolve(s, h)[:length] for s, h in zip(dry, reverberant)]
        references = [fftconvolve(s, h)[:length] for s, h in zip(dry, direct)]
    gains = [10 ** ((TARGET_RMS_DBFS + gain_db) / 20) / math.sqrt(power(reference))
             for reference, gain_db in zip(references, plan.gains_db)]
    references = [g * r for g, r in zip(gains, references)]
    images = [g * x for g, x in zip(gains, images)]
    rng = np.random.default_rng(plan.noise_seed)
    if plan.noise_type == "babble":
        noise = babble_noise(plan.babble, length, fs, cache_dir, rng)
    else:
        noise = coloured_noise(plan.noise_type, length, fs, rng)
    speech_power = power(images[0] + images[1])
    noise *= math.sqrt(speech_power / power(noise) / 10 ** (plan.snr_db / 10))
    return {"s1": references[0], "s2": references[1], "image1": images[0], "image2": images[1],
            "noise": noise}


def quantize_components(components: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """int16 components and their integer sum "mix_both", with one scale for all of them."""
    mixture = components["image1"] + components["image2"] + components["noise"]
    peak = max(float(np.max(np.abs(signal))) for signal in (*components.values(), mixture))
    scale = INT16_MAX * min(1.0, PEAK_LEVEL / peak)
    quantized = {name: np.round(signal * scale).astype(np.int16)
                 for name, signal in components.items()}
    mixture_int = sum(quantized[name].astype(np.int32) for name in ("image1", "image2", "noise"))
    # Rounding moves each component by at most half a step, far inside the headroom.
    assert np.max(np.abs(mixture_int)) <= INT16_MAX
    quantized["mix_both"] = mixture_int.astype(np.int16)
    return quantized


def audio_dir(corpus_dir: Path, fs: int) -> Path:
    return corpus_dir / f"wav{fs // 1000}k" / "min"


def component_paths(plan: MixturePlan, corpus_dir: Path, fs: int) -> Dict[str, Path]:
    """Component name -> wav path; the images are the dry sources themselves without reverb."""
    names = {"mix_both": "mix_both", "s1": "s1", "s2": "s2", "noise": "noise"}
    if plan.room is not None:
        names.update(image1="s1_reverb", image2="s2_reverb")
    folder = audio_dir(corpus_dir, fs) / plan.split
    return {name: folder / subdir / f"{plan.mixture_id}.wav" for name, subdir in names.items()}


def render_mixture(plan: MixturePlan, corpus_dir: Path, fs: int,
                   cache_dir: Path) -> Dict[str, str]:
    """Write the mixture's wavs unless all exist (each write is atomic); return its metadata row."""
    paths = component_paths(plan, corpus_dir, fs)
    if all(path.is_file() for path in paths.values()):
        audio = {name: read_audio(path, dtype="int16")[0] for name, path in paths.items()}
    else:
        audio = quantize_components(mix_components(plan, fs, cache_dir))
        for name, path in paths.items():
            write_audio(path, audio[name], fs, subtype="PCM_16")
    # Without reverb the images are the references themselves.
    speech = audio.get("image1", audio["s1"]).astype(np.int64) + audio.get("image2", audio["s2"])
    snr_db = 10 * math.log10(power(speech) / power(audio["noise"]))
    row = {
        "mixture_ID": plan.mixture_id,
        "mixture_path": str(paths["mix_both"]),
        "source_1_path": str(paths["s1"]),
        "source_2_path": str(paths["s2"]),
        "noise_path": str(paths["noise"]),
        "length": str(len(audio["mix_both"])),
        "source_1_speaker": plan.sources[0].voice.speaker_id,
        "source_2_speaker": plan.sources[1].voice.speaker_id,
        "source_1_text": transcript(plan.sources[0].sentence),
        "source_2_text": transcript(plan.sources[1].sentence),
        "source_1_gain_db": f"{plan.gains_db[0]:.3f}",
        "source_2_gain_db": f"{plan.gains_db[1]:.3f}",
        "noise_type": plan.noise_type,
        "snr_db": f"{snr_db:.3f}",
    }
    if plan.room is not None:
        row.update(
            source_1_reverb_path=str(paths["image1"]),
            source_2_reverb_path=str(paths["image2"]),
            rt60=f"{plan.room.rt60:.3f}",
            source_1_distance=f"{plan.room.distance(0):.3f}",
            source_2_distance=f"{plan.room.distance(1):.3f}",
        )
    return row


# ----------------------------------------------------------------------------- corpus

Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_map(function: Callable[[Item], Result], items: Sequence[Item],
                 nj: int) -> List[Result]:
    """In order; nj=1 runs inline (easier to debug). Results do not depend on nj."""
    if nj <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with multiprocessing.get_context().Pool(min(nj, len(items))) as pool:
        return pool.map(function, items, chunksize=max(1, len(items) // (4 * nj)))


def _synthesize_into_cache(utterance: Utterance, fs: int, cache_dir: Path) -> None:
    if not cache_path(utterance.voice, utterance.sentence, fs, cache_dir).is_file():
        synthesize_cached(utterance.voice, utterance.sentence, fs, cache_dir)


def corpus_options(config: MiniLibriMixConfig, sentences: Sequence[str]) -> Dict[str, object]:
    return {
        "format_version": FORMAT_VERSION,
        **dataclasses.asdict(config),
        "sentences_sha1": hashlib.sha1("\n".join(sentences).encode("utf-8")).hexdigest(),
        "tts_engines": {engine: engine_version(engine) for engine in sorted(DEBIAN_PACKAGES)},
        "train_speakers": [voice.speaker_id for voice in TRAIN_VOICES],
        "eval_speakers": [voice.speaker_id for voice in EVAL_VOICES],
    }


def claim_corpus_dir(corpus_dir: Path, options: Mapping[str, object]) -> None:
    """Record the options in a new corpus_dir, or refuse one that was made with other options."""
    options_path = corpus_dir / "options.json"
    if options_path.is_file():
        recorded = json.loads(options_path.read_text(encoding="utf-8"))
        differences = [f"{key}: {recorded.get(key)!r} there, {options.get(key)!r} now"
                       for key in sorted(set(recorded) | set(options))
                       if recorded.get(key) != options.get(key)]
        if differences:
            raise CorpusOptionsError(
                f"{corpus_dir} holds a mini LibriMix corpus made with other options ("
                + "; ".join(differences) + "): choose another --corpus_dir or delete this one")
        return
    if corpus_dir.is_dir() and any(corpus_dir.iterdir()):
        raise CorpusOptionsError(f"{corpus_dir} is not empty and has no options.json, so it is "
                                 f"not a mini LibriMix corpus: choose another --corpus_dir")
    with atomic_path(options_path) as tmp:
        tmp.write_text(json.dumps(options, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def metadata_path(corpus_dir: Path, split: str) -> Path:
    return corpus_dir / "metadata" / f"mixture_{split}_mix_both.csv"


def write_metadata(path: Path, rows: Sequence[Mapping[str, str]], reverb: bool) -> None:
    """Rows sorted by mixture id; a row with an undeclared column is an error."""
    columns = METADATA_COLUMNS + (REVERB_METADATA_COLUMNS if reverb else ())
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda row: row["mixture_ID"]))


def read_metadata(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def summarize(rows_by_split: Mapping[str, Sequence[Mapping[str, str]]], fs: int) -> str:
    lines = [f"{'split':<6} {'mixtures':>8}   {'duration s mean/min/max':>24}   "
             f"{'SNR dB mean/min/max':>22}"]
    for split, rows in rows_by_split.items():
        durations = np.array([int(row["length"]) / fs for row in rows])
        snrs = np.array([float(row["snr_db"]) for row in rows])
        lines.append(f"{split:<6} {len(rows):>8}   "
                     f"{durations.mean():>8.2f}{durations.min():>8.2f}{durations.max():>8.2f}   "
                     f"{snrs.mean():>7.2f}{snrs.min():>7.2f}{snrs.max():>8.2f}")
    return "\n".join(lines) + "\n"


def generate_corpus(corpus_dir: Path, config: MiniLibriMixConfig, sentences: Sequence[str],
                    nj: int) -> str:
    """Synthesize and mix every mixture not yet on disk; write metadata; return the summary."""
    plans = plan_corpus(config, sentences)
    all_plans = [plan for split in SPLITS for plan in plans[split]]
    cache_dir = corpus_dir / "tts_cache"
    utterances = sorted({u for plan in all_plans for u in (*plan.sources, *plan.babble)},
                        key=lambda u: u.utt_id)
    start = time.perf_counter()
    parallel_map(functools.partial(_synthesize_into_cache, fs=config.fs, cache_dir=cache_dir),
                 utterances, nj)
    tts_seconds = time.perf_counter() - start
    logger.info("TTS: %d utterances in %.1f s", len(utterances), tts_seconds)
    rows = parallel_map(functools.partial(render_mixture, corpus_dir=corpus_dir, fs=config.fs,
                                          cache_dir=cache_dir), all_plans, nj)
    total_seconds = time.perf_counter() - start
    rows_by_split: Dict[str, List[Dict[str, str]]] = {split: [] for split in SPLITS}
    for plan, row in zip(all_plans, rows):
        rows_by_split[plan.split].append(row)
    for split, split_rows in rows_by_split.items():
        write_metadata(metadata_path(corpus_dir, split), split_rows, config.reverb)
    timing = (f"generated {len(all_plans)} mixtures in {total_seconds:.1f} s with nj={nj} "
              f"({100 * total_seconds / len(all_plans):.1f} s per 100 mixtures; "
              f"TTS {tts_seconds:.1f} s)")
    return summarize(rows_by_split, config.fs) + timing + "\n"


def write_data_dir(out_dir: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    """A data dir that exists is kept if it lists these mixtures, refused otherwise."""
    entries = [MixtureEntry(row["mixture_ID"], row["mixture_path"], row["source_1_path"],
                            row["source_2_path"], row["noise_path"]) for row in rows]
    if out_dir.is_dir():
        if read_kv(out_dir / "wav.scp") == {entry.key: entry.mixture for entry in entries}:
            logger.info("%s already lists this corpus, kept", out_dir)
            return out_dir
        raise CorpusOptionsError(f"{out_dir} exists and lists other mixtures or paths: delete it "
                                 f"or choose another --datadir")
    texts = tuple({row["mixture_ID"]: row[f"source_{k}_text"] for row in rows} for k in (1, 2))
    return write_separation_dir(out_dir, entries, texts)


def prepare_mini_librimix(
    corpus_dir: PathLike,
    datadir: PathLike,
    config: MiniLibriMixConfig = MiniLibriMixConfig(),
    nj: int = DEFAULT_NJ,
    fortunes_dir: PathLike = FORTUNES_DIR,
) -> Dict[str, Path]:
    """Build (or resume, or keep) the corpus and return the validated data dir of each split."""
    corpus_dir = Path(corpus_dir).absolute()
    sentences = load_sentences(fortunes_dir, config.min_words, config.max_words)
    options = corpus_options(config, sentences)
    claim_corpus_dir(corpus_dir, options)
    done_marker = corpus_dir / ".done"
    summary_path = corpus_dir / "summary.txt"
    if done_marker.is_file():
        logger.info("%s is complete, nothing to generate", corpus_dir)
    else:
        summary = generate_corpus(corpus_dir, config, sentences, nj)
        with atomic_path(summary_path) as tmp:
            tmp.write_text(summary, encoding="utf-8")
        done_marker.touch()
    logger.info("%s:\n%s", summary_path, summary_path.read_text(encoding="utf-8"))
    return {split: write_data_dir(Path(datadir).absolute() / split,
                                  read_metadata(metadata_path(corpus_dir, split)))
            for split in SPLITS}
