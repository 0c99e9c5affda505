"""SepALM end to end (paper Fig. 1): separator -> units -> corrector -> G2P -> synthesizer -> aligner.

`SepALM.from_pretrained(archive or unpacked dir).separate(audio)` returns, per speaker, the
final waveform with the preliminary and corrected transcripts. Estimates longer than
`PipelineOptions.max_segment_sec` are cut at pauses and the pieces stitched back, so memory stays
bounded on long recordings (the separator has its own segmenting, LongAudioSeparator); the
segments of both speakers (and of several inputs: `separate_batch`) are refined in batches of
`PipelineOptions.batch_size`. `SeparatorModel` is the separator
stage alone, the system of a separator-only archive.

Ablations of paper Table 3 are switches: `mode="separator_only"` (d), `mode="no_aligner"`
(g: the re-synthesized s*), `zero_shot=True` (h: the corrector's base LM without its LoRA
adapter); AR+NAR vs masked (b/c) is whichever synthesizer the archive holds. A mode loads only
the components it needs (zoo.COMPONENTS). The cascaded corrector (e) needs a Whisper N-best
and a separate LM: the recipe runs it (bin/cascade_correct).
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import librosa
import numpy as np
import soxr
import torch
import yaml
from tqdm import tqdm

from sepalm_espnet import zoo
from sepalm_espnet.aligner.inference import AlignerInference
from sepalm_espnet.corrector.generate import PARSED, CorrectorGenerator, DecodeOptions
from sepalm_espnet.corrector.units import build_feature_extractor, load_kmeans, units_from_features
from sepalm_espnet.data.audio import AudioError, read_audio, write_audio
from sepalm_espnet.data.format import load_scp_audio
from sepalm_espnet.data.kaldi_dir import PathLike, read_kv, write_kv
from sepalm_espnet.metrics.rtf import RtfMeter
from sepalm_espnet.separator.long_audio import LongAudioSeparator, SegmentOptions
from sepalm_espnet.separator.registry import (
    DEFAULT_CHECKPOINT,
    DEFAULT_CHECKPOINTS,
    LoadedSeparator,
    load_separator,
    separator_type,
)
from sepalm_espnet.slm_ss.model import SlmSsDecodeOptions
from sepalm_espnet.synthesizer.codec_base import TokenCodec
from sepalm_espnet.synthesizer.g2p import WORD_BOUNDARY, G2p
from sepalm_espnet.synthesizer.layers import PAD_ID
from sepalm_espnet.synthesizer.resynthesize import Resynthesizer, SynthesisOptions
from sepalm_espnet.synthesizer.t2s import load_text_to_semantic

logger = logging.getLogger(__name__)

MODES = zoo.MODES
UNITS_FS = 16000  # HuBERT and the log-mel extractor both take 16 kHz speech
AudioInput = Union[str, Path, np.ndarray, torch.Tensor]
G2P_LANGUAGE = inspect.signature(G2p).parameters["language"].default  # defined once, by G2p


@dataclass(frozen=True)
class PipelineOptions:
    """The pipeline's own options; its components take theirs (DecodeOptions, SynthesisOptions)."""

    max_segment_sec: float = field(
        default=20.0,
        metadata={"help": "estimates longer than this are cut at pauses and refined piece by piece (bounded memory)"},
    )
    batch_size: int = field(
        default=8,
        metadata={"help": "segments refined together (both speakers, every piece, the inputs of separate_batch): one "
                          "corrector / G2P / text-to-semantic / synthesizer call each; 1: one at a time as in stages 9-13"},
    )
    g2p_language: str = field(
        default=G2P_LANGUAGE, metadata={"help": "espeak language of the G2P between the corrector and the synthesizer"}
    )

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_segment_sec <= 0:
            raise ValueError(f"max_segment_sec must be positive, got {self.max_segment_sec}")


@dataclass
class SeparatedSpeaker:
    """One output speaker: `waveform` at the input's rate and length, and its transcripts
    (empty in separator_only mode). `status` is the corrector's (generate.STATUSES) per segment."""

    waveform: np.ndarray
    preliminary: str = ""
    corrected: str = ""
    status: List[str] = field(default_factory=list)


MAX_CHANNELS_FIRST = 2  # (C, T) arrays are taken as channels-first up to stereo


def as_samples(audio: AudioInput, sample_rate: Optional[int]) -> Tuple[np.ndarray, int]:
    """(samples shaped (T,) or (T, channels), rate) from a path, an array or a tensor."""
    if isinstance(audio, (str, Path)):
        samples, fs = read_audio(audio)
        if sample_rate is not None and sample_rate != fs:
            raise ValueError(f"{audio} is {fs} Hz, but sample_rate={sample_rate} was given")
        return samples, fs
    if sample_rate is None:
        raise ValueError("sample_rate is required when audio is an array or a tensor")
    if isinstance(audio, torch.Tensor):
        if not audio.is_floating_point():
            raise AudioError(f"expected floating-point samples in [-1, 1], got a {audio.dtype} tensor")
        audio = audio.detach().to("cpu", torch.float32).numpy()
    samples = np.asarray(audio)
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"expected floating-point samples in [-1, 1], got {samples.dtype}")
    expected = "one mixture: (T,), (T, channels) as soundfile reads it, or (1 or 2, T) as torchaudio loads it"
    if samples.ndim not in (1, 2):
        raise AudioError(f"got shape {samples.shape}; expected {expected}")
    if samples.ndim == 2 and samples.shape[0] < samples.shape[1]:
        if samples.shape[0] > MAX_CHANNELS_FIRST:
            # (3, T) is as likely a batch of three mixtures as three channels: never guessed.
            raise AudioError(f"got shape {samples.shape}, ambiguous (a batch of {samples.shape[0]} "
                             f"mixtures, or channels?); expected {expected}; separate a batch one mixture at a time")
        samples = samples.T  # channels-first -> (T, channels)
    return samples, int(sample_rate)


def checked_samples(audio: AudioInput, sample_rate: Optional[int]) -> Tuple[np.ndarray, int]:
    """as_samples, refusing NaN or infinite samples (named by the file when there is one)."""
    samples, fs = as_samples(audio, sample_rate)
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{audio if isinstance(audio, (str, Path)) else 'input'}: NaN or infinite samples")
    return samples, fs


def separator_config_and_weights(root: Path, checkpoint: Optional[str]) -> Tuple[Dict[str, Any], Path]:
    """From an unpacked archive (meta.yaml) or an experiment directory (config.yaml; checkpoint
    None: the default of its separator type)."""
    if (root / zoo.META_NAME).is_file():
        files = zoo.loadable_files(root, zoo.SEPARATOR_COMPONENT)
        return zoo.load_component_config(root, zoo.SEPARATOR_COMPONENT), files[zoo.MODEL_ROLE]
    config_path = root / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{root}: neither an unpacked archive ({zoo.META_NAME}) nor an experiment (config.yaml)"
        )
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    weights = root / (checkpoint or DEFAULT_CHECKPOINTS[separator_type(config)])
    if not weights.is_file():
        available = sorted(path.name for path in root.glob("*.pth"))
        raise FileNotFoundError(f"{weights} not found; checkpoints in {root}: {available}")
    return config, weights


class SeparatorModel:
    """A trained separator (an ESPnet enh model such as SepFormer, or SLM-SS): any audio in
    (path, array, tensor; any rate, mono or multi-channel), one float32 array per speaker out,
    at the input's rate and length.

    Input longer than one segment is separated segment by segment (LongAudioSeparator), so
    memory stays bounded whatever the length; the speaker order of consecutive segments is
    matched on their overlap, for either kind.
    """

    def __init__(self, loaded: LoadedSeparator, fs: int, segment: SegmentOptions = SegmentOptions()):
        self.loaded = loaded
        self.model = loaded.model
        self.fs = fs
        self.num_spk = loaded.num_spk
        self.long_audio = LongAudioSeparator(loaded.separate, loaded.num_spk, fs, segment,
                                             min_samples=loaded.min_samples)

    @classmethod
    def from_pretrained(
        cls,
        src: zoo.PretrainedSource,
        checkpoint: Optional[str] = None,
        device: str = "cpu",
        cache_dir: Optional[PathLike] = None,
        segment: SegmentOptions = SegmentOptions(),
        slm_ss_options: SlmSsDecodeOptions = SlmSsDecodeOptions(),
    ) -> "SeparatorModel":
        """src: archive (.zip), unpacked archive directory, experiment directory, Hugging Face
        repo id, or espnet_model_zoo's files dict (zoo.resolve_pretrained); `checkpoint` names
        the weights file in an experiment directory (default: valid.si_snr_loss.ave.pth for an
        enh model, valid.loss.ave.pth for SLM-SS); `slm_ss_options`: SLM-SS's decoding."""
        root = zoo.resolve_pretrained(src, cache_dir)
        config, weights = separator_config_and_weights(root, checkpoint)
        loaded = load_separator(config, weights, device, slm_ss_options)
        if loaded.fs is None and "sample_rate" not in config:
            raise ValueError(f"{src}: the separator's config records no sample_rate")
        fs = int(loaded.fs if loaded.fs is not None else config["sample_rate"])
        logging.info("%s separator from %s: %s at %d Hz, %d speakers", loaded.kind, src, weights.name, fs, loaded.num_spk)
        return cls(loaded, fs, segment)

    @property
    def statuses(self) -> Optional[List[str]]:
        """SLM-SS: the status of each separator call so far (ok, or the length cap hit); else None."""
        return self.loaded.statuses

    def separate(self, audio: AudioInput, sample_rate: Optional[int] = None) -> List[np.ndarray]:
        """sample_rate: required for arrays and tensors; a file's own rate is used otherwise."""
        samples, fs = as_samples(audio, sample_rate)
        estimates = self.long_audio.separate_array(samples, fs, resample=True)
        if fs != self.fs:
            logging.info("resampling the estimates back to %d Hz (soxr)", fs)
            estimates = soxr.resample(np.ascontiguousarray(estimates.T), self.fs, fs).T
            shortfall = max(0, len(samples) - estimates.shape[1])
            estimates = np.pad(estimates, ((0, 0), (0, shortfall)))[:, : len(samples)]
        return [np.ascontiguousarray(estimate, dtype=np.float32) for estimate in estimates]


def pause_segments(wave: np.ndarray, fs: int, max_sec: float, top_db: float = 40.0) -> List[Tuple[int, int]]:
    """Contiguous (start, end) pieces covering `wave`, each at most max_sec long, cut in the
    middle of pauses (librosa's non-silent intervals) where there is one, hard cuts otherwise."""
    max_len = max(1, int(max_sec * fs))
    if len(wave) <= max_len:
        return [(0, len(wave))]
    voiced = librosa.effects.split(np.asarray(wave, np.float32), top_db=top_db)
    cuts = [int((end + start) // 2) for (_, end), (start, _) in zip(voiced[:-1], voiced[1:])]
    segments, start = [], 0
    while len(wave) - start > max_len:
        inside = [cut for cut in cuts if start < cut <= start + max_len]
        end = inside[-1] if inside else start + max_len
        segments.append((start, end))
        start = end
    segments.append((start, len(wave)))
    return segments


def _resample(wave: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    if fs_in == fs_out:
        return wave
    return soxr.resample(wave, fs_in, fs_out).astype(np.float32)


def _fit(wave: np.ndarray, length: int) -> np.ndarray:
    return np.pad(wave, (0, max(0, length - len(wave))))[:length]


class SepALM:
    """The pipeline over loaded components; those a mode does not run may be None."""

    def __init__(
        self,
        separator: SeparatorModel,
        unit_extractor: Any = None,
        quantizer: Any = None,
        corrector: Optional[CorrectorGenerator] = None,
        g2p: Optional[G2p] = None,
        resynthesizer: Optional[Resynthesizer] = None,
        aligner: Optional[AlignerInference] = None,
        mode: str = zoo.SEPALM,
        options: PipelineOptions = PipelineOptions(),
        text_to_semantic: Optional[Tuple[Any, Any]] = None,
    ):
        """text_to_semantic: (TextToSemantic, its TokenList) of a synthesizer conditioned on
        semantic tokens (masked, `condition: semantic`)."""
        parts = {  # what each zoo component became; the codec lives in the resynthesizer
            zoo.SEPARATOR_COMPONENT: (separator,),
            zoo.KMEANS_COMPONENT: (unit_extractor, quantizer),
            zoo.CORRECTOR_COMPONENT: (corrector,),
            zoo.CODEC_COMPONENT: (resynthesizer,),
            zoo.SYNTHESIZER_COMPONENT: (resynthesizer, g2p),
            zoo.T2S_COMPONENT: (text_to_semantic,),
            zoo.ALIGNER_COMPONENT: (aligner,),
        }
        self.loaded_components = frozenset(name for name, held in parts.items() if all(p is not None for p in held))
        self.mode = mode
        self.separator = separator
        self.unit_extractor = unit_extractor
        self.quantizer = quantizer
        self.corrector = corrector
        self.g2p = g2p
        self.resynthesizer = resynthesizer
        self.aligner = aligner
        self.options = options
        self.text_to_semantic = text_to_semantic
        if resynthesizer is not None and resynthesizer.needs_semantic and text_to_semantic is None:
            raise ValueError("the synthesizer is conditioned on semantic tokens: a text-to-semantic model is needed")
        self.fs = separator.fs
        self.rtf = RtfMeter()  # per component, over every separate() call

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        """Any mode whose components are loaded (a full system also runs the ablations)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        missing = [component.name for component in zoo.mode_components(mode)
                   if component.needed_if is None and component.name not in self.loaded_components]
        if missing:
            raise ValueError(f"mode '{mode}' runs {missing}, which are not loaded (load the system with mode='{mode}')")
        self._mode = mode

    @classmethod
    def from_pretrained(
        cls,
        src: zoo.PretrainedSource,
        device: str = "cpu",
        cache_dir: Optional[PathLike] = None,
        mode: str = zoo.SEPALM,
        zero_shot: bool = False,
        corrector_options: DecodeOptions = DecodeOptions(),
        synthesis_options: SynthesisOptions = SynthesisOptions(),
        options: PipelineOptions = PipelineOptions(),
    ) -> "SepALM":
        """src: a packed SepALM archive (stage 15), its unpacked directory, its Hugging Face repo
        id or espnet_model_zoo's files dict (zoo.resolve_pretrained); weights are read
        from safetensors after every checksum was verified (zoo.unpack). Only the components
        `mode` runs are loaded, so a separator-only archive loads as mode separator_only."""
        root = zoo.resolve_pretrained(src, cache_dir)
        zoo.check_mode(root, mode)
        runs = {component.name for component in zoo.mode_components(mode)}
        separator = SeparatorModel.from_pretrained(root, device=device)
        extractor = quantizer = corrector = g2p = resynthesizer = text_to_semantic = aligner = None
        if zoo.KMEANS_COMPONENT in runs:
            kmeans = zoo.loadable_files(root, zoo.KMEANS_COMPONENT)
            quantizer, feature_type, feature_conf = load_kmeans(Path(kmeans[zoo.CENTERS_ROLE]).parent)
            extractor = build_feature_extractor(feature_type, feature_conf, device)
        if zoo.CORRECTOR_COMPONENT in runs:
            corrector = CorrectorGenerator.from_files(
                zoo.load_component_config(root, zoo.CORRECTOR_COMPONENT),
                zoo.loadable_files(root, zoo.CORRECTOR_COMPONENT)[zoo.MODEL_ROLE],
                device=device, zero_shot=zero_shot, **dataclasses.asdict(corrector_options),
            )
        if zoo.SYNTHESIZER_COMPONENT in runs:
            resynthesizer = Resynthesizer.from_files(
                zoo.load_component_config(root, zoo.SYNTHESIZER_COMPONENT),
                zoo.loadable_files(root, zoo.SYNTHESIZER_COMPONENT)[zoo.MODEL_ROLE],
                zoo.loadable_files(root, zoo.CODEC_COMPONENT)[zoo.CODEC_ROLE],
                device=device, options=synthesis_options,
            )
            g2p = G2p(options.g2p_language)
            if resynthesizer.needs_semantic:
                text_to_semantic = _load_text_to_semantic(root, device)
        if zoo.ALIGNER_COMPONENT in runs:
            aligner = AlignerInference.from_pretrained(root, device=device)
        return cls(separator, extractor, quantizer, corrector, g2p, resynthesizer, aligner,
                   mode=mode, options=options, text_to_semantic=text_to_semantic)

    def separate(self, audio: AudioInput, sample_rate: Optional[int] = None) -> List[SeparatedSpeaker]:
        """sample_rate: required for arrays and tensors; a file's own rate is used otherwise."""
        return self.separate_batch([audio], sample_rate)[0]

    def separate_batch(
        self, audios: Sequence[AudioInput], sample_rate: Optional[int] = None
    ) -> List[List[SeparatedSpeaker]]:
        """separate() of each input. Each is separated alone; then the segments of every estimate
        of every input are refined in batches of options.batch_size (similar lengths together).
        Greedy decoding gives what one at a time gives; sampling draws each batch from one stream."""
        inputs = [checked_samples(audio, sample_rate) for audio in audios]  # every input read before any work
        estimates: List[List[np.ndarray]] = []
        for samples, fs in inputs:
            seconds = samples.shape[0] / fs
            self.rtf.add_input(seconds)
            with self.rtf.time("separator", seconds):
                estimates.append(self.separator.separate(samples, fs))
        if self.mode == zoo.SEPARATOR_ONLY:
            return [[SeparatedSpeaker(estimate) for estimate in per_input] for per_input in estimates]
        pieces: List[Tuple[Tuple[int, int], np.ndarray]] = []  # ((input, speaker), segment at the model's rate)
        for index, ((_, fs), per_input) in enumerate(zip(inputs, estimates)):
            for speaker, estimate in enumerate(per_input):
                at_model_rate = _resample(estimate, fs, self.fs)
                pieces += [((index, speaker), at_model_rate[start:end]) for start, end in
                           pause_segments(at_model_rate, self.fs, self.options.max_segment_sec)]
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
        refined: Dict[int, Tuple[np.ndarray, Any]] = {}
        for first in range(0, len(order), self.options.batch_size):
            batch = order[first : first + self.options.batch_size]
            refined.update(zip(batch, self._refine_batch([pieces[i][1] for i in batch])))
        per_estimate: Dict[Tuple[int, int], List[Tuple[np.ndarray, Any]]] = {}
        for i, (owner, _) in enumerate(pieces):  # in time order within each estimate
            per_estimate.setdefault(owner, []).append(refined[i])
        return [[self._joined(per_estimate[index, speaker], estimate, fs) for speaker, estimate in enumerate(per_input)]
                for index, ((_, fs), per_input) in enumerate(zip(inputs, estimates))]

    def _joined(self, parts: List[Tuple[np.ndarray, Any]], estimate: np.ndarray, fs: int) -> SeparatedSpeaker:
        """One estimate's refined segments, back at the input's rate and length."""
        refined = np.concatenate([output for output, _ in parts])
        return SeparatedSpeaker(
            _fit(_resample(refined, self.fs, fs), len(estimate)).astype(np.float32),
            " ".join(correction.preliminary for _, correction in parts if correction.preliminary),
            " ".join(correction.corrected for _, correction in parts if correction.corrected),
            [correction.status for _, correction in parts],
        )

    def _refine_batch(self, estimates: List[np.ndarray]) -> List[Tuple[np.ndarray, Any]]:
        """Segments of estimates (at the separator's rate) -> (output, Correction) each. The
        corrector, G2P, text-to-semantic and synthesizer models take the batch at once; unit
        features, codec and aligner go segment by segment, since their convolutions and
        normalizations would see a batch's padding (and they cost little of the total)."""
        seconds = sum(len(estimate) for estimate in estimates) / self.fs
        with self.rtf.time("units", seconds):
            units = [units_from_features(self.unit_extractor.extract(_resample(estimate, self.fs, UNITS_FS)), self.quantizer)
                     for estimate in estimates]
        with self.rtf.time("corrector", seconds):
            corrections = self.corrector.correct(units)
        with self.rtf.time("g2p", seconds):
            phonemes = self.g2p([correction.corrected for correction in corrections])
        semantic: List[Optional[List[int]]] = [None] * len(estimates)
        if self.text_to_semantic is not None:
            with self.rtf.time("text_to_semantic", seconds):
                semantic = self._semantic(phonemes)
        codec: TokenCodec = self.resynthesizer.codec
        with self.rtf.time("synthesizer", seconds):
            at_codec_rate = [_resample(estimate, self.fs, codec.sample_rate) for estimate in estimates]
            est_tokens = [codec.encode_batch([wave])[0].T.cpu().numpy() for wave in at_codec_rate]
            waves = self.resynthesizer.synthesize_batch(est_tokens, phonemes, semantic, [len(w) for w in at_codec_rate])
            refined = [_fit(_resample(wave, codec.sample_rate, self.fs), len(estimate))
                       for wave, estimate in zip(waves, estimates)]
        if self.mode == zoo.NO_ALIGNER:
            return list(zip(refined, corrections))
        with self.rtf.time("aligner", seconds):
            aligned = [
                _fit(_resample(self.aligner.align(_resample(estimate, self.fs, self.aligner.fs),
                                                  _resample(synthesized, self.fs, self.aligner.fs)),
                               self.aligner.fs, self.fs), len(estimate))
                for estimate, synthesized in zip(estimates, refined)
            ]
        return list(zip(aligned, corrections))

    def _semantic(self, phonemes: List[str]) -> List[List[int]]:
        """Greedy semantic tokens of each phoneme string (an empty one stands for a pause), in one
        padded generate() call."""
        model, token_list = self.text_to_semantic
        ids = [token_list.encode(text) or token_list.encode(WORD_BOUNDARY) for text in phonemes]
        device = next(model.parameters()).device
        padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(row) for row in ids], batch_first=True,
                                                 padding_value=PAD_ID).to(device)
        units, lengths = model.generate(padded, torch.tensor([len(row) for row in ids], device=device))
        return [row[: int(length)].tolist() for row, length in zip(units, lengths)]


def _load_text_to_semantic(root: Path, device: str) -> Tuple[Any, Any]:
    component = zoo.COMPONENTS_BY_NAME[zoo.T2S_COMPONENT]
    if component.name not in zoo.read_meta(root)["components"]:
        raise zoo.ArchiveError(f"{root}: no '{component.name}' component, needed when {component.needed_if}")
    model_file = zoo.loadable_files(root, component.name)[zoo.MODEL_ROLE]
    return load_text_to_semantic(zoo.load_component_config(root, component.name), model_file, device)


def write_speakers(outdir: Path, name: str, speakers: List[SeparatedSpeaker], fs: int) -> List[Path]:
    """<outdir>/<name>_spk<n>.wav (float, the input's rate and length)."""
    paths = []
    for n, speaker in enumerate(speakers, start=1):
        path = outdir / f"{name}_spk{n}.wav"
        write_audio(path, speaker.waveform, fs, subtype="FLOAT")
        paths.append(path)
    return paths


def overall_status(segment_statuses: List[str]) -> str:
    """One estimate's corrector status: its first segment that fell back, else parsed."""
    return next((status for status in segment_statuses if status != PARSED), PARSED)


def separate_entries(model: SepALM, entries: Mapping[str, str], where: PathLike, outdir: PathLike) -> None:
    """`key audio` entries -> <outdir>/wavs/<key>_spk<n>.wav, and once every key is done
    spk<n>.scp, text_pt_spk<n>, text_ct_spk<n> and status_spk<n> (the corrector's, per estimate).
    Mixtures go through separate_batch options.batch_size at a time."""
    outdir = Path(outdir)
    tables: Dict[str, Dict[int, Dict[str, str]]] = {name: {} for name in ("spk", "text_pt_spk", "text_ct_spk", "status_spk")}
    keys = list(entries)
    group_size = model.options.batch_size
    with tqdm(desc="separate", unit="mixture", total=len(keys)) as progress:
        for first in range(0, len(keys), group_size):
            group = keys[first : first + group_size]
            audio = [load_scp_audio(entries[key], f"{where} (key {key})") for key in group]
            rates = {fs for _, fs in audio}
            results = (model.separate_batch([samples for samples, _ in audio], rates.pop()) if len(rates) == 1
                       else [model.separate(samples, fs) for samples, fs in audio])
            for key, (_, fs), speakers in zip(group, audio, results):
                paths = write_speakers(outdir / "wavs", key, speakers, fs)
                for n, (path, speaker) in enumerate(zip(paths, speakers), start=1):
                    for name, cell in (("spk", str(path)), ("text_pt_spk", speaker.preliminary),
                                       ("text_ct_spk", speaker.corrected), ("status_spk", overall_status(speaker.status))):
                        tables[name].setdefault(n, {})[key] = cell
            progress.update(len(group))
    for name, per_speaker in tables.items():
        for n, cells in per_speaker.items():
            write_kv(outdir / (f"spk{n}.scp" if name == "spk" else f"{name}{n}"), cells)


def measure_rtf(model: SepALM, wav_scp: PathLike, utterances: int = 4, seconds: float = 5.0) -> RtfMeter:
    """Per-component RTF over the scp's first `utterances` mixtures cut or looped to `seconds`
    (paper §4.3: 5 s inputs); the first also runs once untimed, so warm-up is not counted."""
    entries = list(read_kv(wav_scp).items())[:utterances]
    inputs = []
    for key, value in entries:
        wave, fs = load_scp_audio(value, f"{wav_scp} (key {key})")
        inputs.append((np.resize(wave, int(seconds * fs)), fs))
    model.separate(*inputs[0])
    model.rtf = RtfMeter()
    for wave, fs in inputs:
        model.separate(wave, fs)
    return model.rtf
