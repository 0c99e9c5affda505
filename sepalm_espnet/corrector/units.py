"""Discrete speech units, the corrector's view of the separated speech (paper §3.3, stage 6).

SpeechGPT reads speech as mHuBERT layer-11 features quantised by a 1000-cluster k-means, with
runs of one unit merged (`<sosp><12><45><7><eosp>` in its prompt). Here:

- a feature extractor (`FEATURE_EXTRACTORS`): `hubert`, a transformers HubertModel dir or hub
  id and one of its layers; `logmel`, 80 log-mel energies on the same 50 frames/s grid, for
  the offline mini recipe, which has no HuBERT weights;
- k-means fitted with scikit-learn's MiniBatchKMeans, stored as `centers.npy` + `kmeans.yaml`
  (which records the feature extractor, so extraction always matches fitting) and applied by
  `KMeansQuantizer`, a nearest-center search in numpy: a downloaded k-means is never unpickled;
- units files in Kaldi text form, `key 12 45 7`, sorted by key.

To use SpeechGPT's own k-means (`mhubert_base_vp_en_es_fr_it3_L11_km1000.bin`), convert it
once with `import_sklearn_kmeans` and pair it with the same mHuBERT converted to transformers
format (`fairseq_hubert.convert_fairseq_hubert`): SpeechGPT-7B-cm only understands units of
that exact k-means (egs2/libri2mix_wham/sepalm1/run.sh gives both commands).
"""
from __future__ import annotations

import abc
import logging
import math
import random
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import joblib
import librosa
import numpy as np
import torch
import yaml
from sklearn.cluster import MiniBatchKMeans

from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import (
    DataDirError,
    PathLike,
    atomic_path,
    read_key_file,
    read_kv,
    select_entries,
    write_kv,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CENTERS_FILE = "centers.npy"
KMEANS_CONFIG_FILE = "kmeans.yaml"
SPEECH_START = "<sosp>"
SPEECH_END = "<eosp>"


class FeatureExtractor(abc.ABC):
    """Frame features of 16 kHz mono speech, the space the k-means partitions."""

    frame_rate: float  # frames per second

    @abc.abstractmethod
    def extract(self, wav: np.ndarray) -> np.ndarray:
        """(frames, dim) float32 features of a (T,) float32 waveform; at least one frame."""

    @property
    @abc.abstractmethod
    def config(self) -> Dict[str, Any]:
        """Constructor options (device aside) that rebuild this extractor: kmeans.yaml keeps them."""


def as_waveform(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected a mono (T,) waveform, got shape {wav.shape}")
    return wav


def pad_to(wav: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad inputs shorter than one analysis window, so every utterance has a unit."""
    return np.pad(wav, (0, max(0, n_samples - len(wav))))


def read_do_normalize(source: str) -> bool:
    """The model's saved preprocessor decides; without one, raw waveforms (HuBERT base, mHuBERT)."""
    from transformers import Wav2Vec2FeatureExtractor

    try:
        return bool(Wav2Vec2FeatureExtractor.from_pretrained(source).do_normalize)
    except OSError:  # no preprocessor_config.json beside the weights
        return False


def conv_frame_grid(kernels: Sequence[int], strides: Sequence[int]) -> Tuple[int, int]:
    """(hop, receptive field) in samples of a stack of unpadded convolutions (HuBERT: 320, 400)."""
    receptive_field, hop = 1, 1
    for kernel, stride in zip(kernels, strides):
        receptive_field += (kernel - 1) * hop
        hop *= stride
    return hop, receptive_field


class HubertFeatureExtractor(FeatureExtractor):
    """Hidden states of one transformer layer of a HuBERT model (SpeechGPT: mHuBERT, layer 11).

    `layer` k is the output of transformer layer k (0: the input of layer 1), as fairseq's
    `output_layer=k` in SpeechGPT's speech2unit. `normalize` (zero mean, unit variance over
    the whole utterance) defaults to the `do_normalize` of a saved Wav2Vec2FeatureExtractor.

    Inputs longer than `chunk_seconds` are cut into equal chunks, each aligned to the
    convolutional frame grid (a chunk carries the receptive-field overlap of its last frame),
    so the frame count always equals that of one pass; features differ from one pass only by
    the context a chunk lacks (attention, positional convolution, first-layer group norm).
    The default matches SpeechGPT's 100 s (1,600,000 samples) chunks; attention memory grows
    with the square of the chunk length.
    """

    def __init__(self, model: str, layer: int = 11, normalize: Optional[bool] = None,
                 chunk_seconds: float = 100.0, device: str = "cpu"):
        # Imported here: transformers takes ~10 s to import, which logmel users need not pay.
        from transformers import HubertModel

        self.source = str(model)
        # float32 whatever dtype the weights were saved in: the waveform is float32.
        self.model = HubertModel.from_pretrained(self.source, dtype=torch.float32).to(device).eval()
        self.device = device
        n_layers = self.model.config.num_hidden_layers
        if not 0 <= layer <= n_layers:
            raise ValueError(f"{self.source}: layer {layer} out of range 0..{n_layers}")
        self.layer = layer
        self.normalize = read_do_normalize(self.source) if normalize is None else bool(normalize)
        logger.info("%s: layer %d, waveform normalisation %s", self.source, layer, self.normalize)
        self.hop, self.receptive_field = conv_frame_grid(self.model.config.conv_kernel,
                                                         self.model.config.conv_stride)
        self.frame_rate = SAMPLE_RATE / self.hop
        self.chunk_seconds = float(chunk_seconds)
        self.chunk_frames = max(1, int(self.chunk_seconds * self.frame_rate))

    @property
    def config(self) -> Dict[str, Any]:
        return {"model": self.source, "layer": self.layer, "normalize": self.normalize,
                "chunk_seconds": self.chunk_seconds}

    def extract(self, wav: np.ndarray) -> np.ndarray:
        wav = as_waveform(wav)
        if self.normalize:  # as Wav2Vec2FeatureExtractor does, over the whole utterance
            wav = (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)
        wav = pad_to(wav, self.receptive_field)
        n_frames = (len(wav) - self.receptive_field) // self.hop + 1
        chunks = np.array_split(np.arange(n_frames), math.ceil(n_frames / self.chunk_frames))
        features = []
        with torch.inference_mode():
            for frames in chunks:
                # The last chunk keeps the tail samples too, so one chunk is exactly one pass.
                last = frames[-1] == n_frames - 1
                start = frames[0] * self.hop
                stop = len(wav) if last else frames[-1] * self.hop + self.receptive_field
                piece = torch.from_numpy(wav[start:stop]).to(self.device)[None]
                hidden = self.model(piece, output_hidden_states=True).hidden_states[self.layer]
                features.append(hidden[0].cpu())
        return torch.cat(features).numpy()


class LogMelFeatureExtractor(FeatureExtractor):
    """Log mel energies on HuBERT's frame grid (25 ms windows every 20 ms, no centering)."""

    window_samples = 400
    hop_samples = 320
    frame_rate = SAMPLE_RATE / hop_samples

    def __init__(self, n_mels: int = 80, device: str = "cpu"):
        self.n_mels = n_mels
        self.device = device
        mel_filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=self.window_samples, n_mels=n_mels)
        self.mel_filters = torch.from_numpy(mel_filters).to(device)
        self.window = torch.hann_window(self.window_samples, device=device)

    @property
    def config(self) -> Dict[str, Any]:
        return {"n_mels": self.n_mels}

    def extract(self, wav: np.ndarray) -> np.ndarray:
        wav = torch.from_numpy(pad_to(as_waveform(wav), self.window_samples)).to(self.device)
        spectrum = torch.stft(wav, n_fft=self.window_samples, hop_length=self.hop_samples,
                              window=self.window, center=False, return_complex=True)
        mel = self.mel_filters @ spectrum.abs().square()
        return torch.log(mel.clamp_min(1e-10)).T.contiguous().cpu().numpy()


FEATURE_EXTRACTORS = {"hubert": HubertFeatureExtractor, "logmel": LogMelFeatureExtractor}


def build_feature_extractor(feature_type: str, feature_conf: Dict[str, Any],
                            device: str = "cpu") -> FeatureExtractor:
    """`feature_type` is a key of FEATURE_EXTRACTORS; `feature_conf` its options."""
    if feature_type not in FEATURE_EXTRACTORS:
        raise ValueError(f"unknown feature type '{feature_type}'; choose from {sorted(FEATURE_EXTRACTORS)}")
    return FEATURE_EXTRACTORS[feature_type](**feature_conf, device=device)


class KMeansQuantizer:
    """Nearest-center assignment in numpy: applying a k-means needs neither pickle nor sklearn."""

    def __init__(self, centers: np.ndarray, batch_frames: int = 4096):
        centers = np.asarray(centers)
        if centers.ndim != 2 or len(centers) == 0:
            raise ValueError(f"k-means centers must be a non-empty (n_clusters, dim) array, got {centers.shape}")
        self.centers = centers.astype(np.float32)
        # float64 distances: ties between close centers are not decided by rounding.
        self._centers64 = self.centers.astype(np.float64)  # as saved, so a loaded copy agrees
        self._center_norms = np.square(self._centers64).sum(axis=1)
        self.batch_frames = batch_frames

    @property
    def n_clusters(self) -> int:
        return self.centers.shape[0]

    @property
    def dim(self) -> int:
        return self.centers.shape[1]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(frames,) int64 indices of the nearest center, by squared Euclidean distance."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features of shape {features.shape} do not match {self.dim}-dim centers")
        labels = np.empty(len(features), dtype=np.int64)
        for start in range(0, len(features), self.batch_frames):
            block = features[start:start + self.batch_frames].astype(np.float64)
            # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every center.
            distances = self._center_norms - 2.0 * block @ self._centers64.T
            labels[start:start + len(block)] = distances.argmin(axis=1)
        return labels


def fit_kmeans(features: Iterable[np.ndarray], n_clusters: int, seed: int = 0,
               max_frames: int = 500_000, batch_size: int = 10_000) -> KMeansQuantizer:
    """MiniBatchKMeans on the first `max_frames` frames of `features` (shuffle utterances first).

    The iterable is consumed lazily and left as soon as enough frames are in, so feature
    extraction stops there too.
    """
    blocks, n_frames = [], 0
    for block in features:
        blocks.append(np.asarray(block, dtype=np.float32)[:max_frames - n_frames])
        n_frames += len(blocks[-1])
        if n_frames >= max_frames:
            break
    if n_frames < n_clusters:
        raise ValueError(f"{n_frames} feature frames cannot make {n_clusters} clusters")
    data = np.concatenate(blocks)
    logger.info("fitting %d clusters on %d frames of dim %d", n_clusters, *data.shape)
    kmeans = MiniBatchKMeans(n_clusters=n_clusters, batch_size=batch_size, random_state=seed)
    kmeans.fit(data)
    return KMeansQuantizer(kmeans.cluster_centers_)


def import_sklearn_kmeans(path: PathLike) -> KMeansQuantizer:
    """The centers of a joblib-pickled sklearn k-means (fairseq/SpeechGPT's `km.bin`).

    Unpickling runs code from the file: use it once, on a file from a source you trust, and
    share the `save_kmeans` result instead.
    """
    return KMeansQuantizer(joblib.load(path).cluster_centers_)


def save_kmeans(output_dir: PathLike, quantizer: KMeansQuantizer, feature_type: str,
                feature_conf: Dict[str, Any]) -> None:
    """centers.npy (no pickle) and kmeans.yaml, the latter written last as the completion mark."""
    output_dir = Path(output_dir)
    with atomic_path(output_dir / CENTERS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, quantizer.centers, allow_pickle=False)
    description = {"n_clusters": quantizer.n_clusters, "feature_dim": quantizer.dim,
                   "feature_type": feature_type, "feature_conf": dict(feature_conf)}
    with atomic_path(output_dir / KMEANS_CONFIG_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(description, sort_keys=False), encoding="utf-8")


def load_kmeans(kmeans_dir: PathLike) -> Tuple[KMeansQuantizer, str, Dict[str, Any]]:
    """(quantizer, feature_type, feature_conf) of a save_kmeans directory."""
    kmeans_dir = Path(kmeans_dir)
    config_path = kmeans_dir / KMEANS_CONFIG_FILE
    if not config_path.is_file():
        raise DataDirError(f"{config_path}: file not found (not a finished k-means directory)")
    description = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    quantizer = KMeansQuantizer(np.load(kmeans_dir / CENTERS_FILE, allow_pickle=False))
    expected = (description["n_clusters"], description["feature_dim"])
    if (quantizer.n_clusters, quantizer.dim) != expected:
        raise DataDirError(f"{kmeans_dir / CENTERS_FILE}: shape {quantizer.centers.shape} but "
                           f"{config_path} says {expected}")
    return quantizer, description["feature_type"], description["feature_conf"]


def merge_repeats(units: Sequence[int]) -> List[int]:
    """Keep one unit of each run of equal units (SpeechGPT's reduced units)."""
    return [unit for index, unit in enumerate(units) if index == 0 or unit != units[index - 1]]


def units_from_features(features: np.ndarray, quantizer: KMeansQuantizer, dedup: bool = True) -> List[int]:
    units = quantizer(features).tolist()
    return merge_repeats(units) if dedup else units


def units_to_prompt_string(units: Sequence[int]) -> str:
    """SpeechGPT's speech span: `<sosp><12><45><7><eosp>`."""
    return SPEECH_START + "".join(f"<{unit}>" for unit in units) + SPEECH_END


def units_to_text(units: Sequence[int]) -> str:
    """The value of a units-file line: `12 45 7`."""
    return " ".join(str(unit) for unit in units)


def read_units(path: PathLike) -> Dict[str, List[int]]:
    """A units file (`key 12 45 7` lines); a non-integer names its file and line."""
    units: Dict[str, List[int]] = {}
    for lineno, (key, value) in enumerate(read_kv(path).items(), 1):
        try:
            units[key] = [int(token) for token in value.split()]
        except ValueError:
            raise DataDirError(f"{path}:{lineno}: key '{key}': units must be integers") from None
    return units


def fit_kmeans_on_scps(extractor: FeatureExtractor, wav_scps: Sequence[PathLike], n_clusters: int,
                       seed: int = 0, max_frames: int = 500_000, batch_size: int = 10_000) -> KMeansQuantizer:
    """k-means on the features of utterances drawn in a seeded random order from all scps."""
    utterances = [(f"{scp} (key {key})", value) for scp in wav_scps for key, value in read_kv(scp).items()]
    random.Random(seed).shuffle(utterances)

    def features() -> Iterator[np.ndarray]:
        for where, value in utterances:
            yield extractor.extract(load_mono(value, where, SAMPLE_RATE))

    return fit_kmeans(features(), n_clusters, seed, max_frames, batch_size)


def extract_units_scp(extractor: FeatureExtractor, quantizer: KMeansQuantizer, wav_scp: PathLike,
                      output: PathLike, key_file: Optional[PathLike] = None,
                      dedup: bool = True) -> Dict[str, List[int]]:
    """Write the sorted units file of wav_scp (key_file's keys only, if given: a JOB split)."""
    entries = select_entries(wav_scp, read_key_file(key_file))
    units: Dict[str, List[int]] = {}
    for key, value in entries.items():
        features = extractor.extract(load_mono(value, f"{wav_scp} (key {key})", SAMPLE_RATE))
        units[key] = units_from_features(features, quantizer, dedup)
        if len(units) % 100 == 0:
            logger.info("%s: %d/%d utterances", wav_scp, len(units), len(entries))
    write_kv(output, {key: units_to_text(sequence) for key, sequence in units.items()})
    return units
