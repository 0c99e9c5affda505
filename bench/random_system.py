"""A SepALM system of random weights at a named size, for timing without trained weights
(bench/sepalm_rtf.py --random_weights).

Every component is built from the recipe's configs (egs2/TEMPLATE/sepalm1/conf/tuning) into the
classes `SepALM.from_pretrained` would load, so each input costs what it costs the trained
system. Random weights change what comes out, not the work, except for two decoding lengths
that trained weights decide; those are forced to realistic values:
- the corrector writes exactly `ForcedDecoding.transcript_tokens` tokens in each chain-of-thought
  step (step I closed by ".", step II by <eoa>), drawn from whole-word pieces (force_corrector_lengths);
- the AR synthesizer decodes exactly T' frames (SynthesisOptions(length_policy="exact")).

Sizes (SIZES): `mini` is the mini recipe's system; `paper` the paper's (SepFormer 26M,
HuBERT-base features with 1000 units, a LLaMA-7B-shaped corrector with LoRA r 8 on q/k/v/o,
AR+NAR 12 x 1024, the released 16 kHz DAC architecture, the CNN aligner); `reduced_paper` is
`paper` with a 2-layer slice of the LLaMA-7B shape as the corrector (every width of the 7B,
2 of its 32 layers), which a CPU runs in minutes. A corrector that does
not fit the device's free memory is replaced by the next smaller shape of CORRECTOR_FALLBACKS,
and `System.corrector_note` says so.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import yaml

from sepalm_espnet.aligner.inference import AlignerInference
from sepalm_espnet.aligner.model import AlignerBuilder
from sepalm_espnet.corrector.generate import CorrectorGenerator
from sepalm_espnet.corrector.model import AudioLMCorrector
from sepalm_espnet.corrector.prompt import encode_prompt
from sepalm_espnet.corrector.tokenizer import add_unit_tokens, corrector_tokens, train_sentencepiece_tokenizer
from sepalm_espnet.corrector.units import KMeansQuantizer, build_feature_extractor
from sepalm_espnet.data.mini_librimix import FORTUNES_DIR, load_sentences, transcript
from sepalm_espnet.metrics.rtf import RtfMeter
from sepalm_espnet.pipeline import G2P_LANGUAGE, UNITS_FS, PipelineOptions, SepALM, SeparatorModel
from sepalm_espnet.separator.registry import ENH, EnhancementTask, LoadedSeparator, enh_model_separate_fn, min_input_samples
from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.synthesizer.codec import DAC_16KHZ_ARCH, DacCodec, build_dac
from sepalm_espnet.synthesizer.g2p import G2p, TokenList
from sepalm_espnet.synthesizer.layers import SynthesisOptions
from sepalm_espnet.synthesizer.resynthesize import Resynthesizer

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"
FS = 16000  # the recipe's --fs: every component works at 16 kHz

LLAMA_7B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                intermediate_size=11008, max_position_embeddings=2048)
# LLaMA's 32000 pieces plus SpeechGPT-7B-cm's units and markers: the paper corrector's vocabulary.
SPEECHGPT_VOCAB = 32000 + len(corrector_tokens(1000))
CORRECTOR_SHAPES: Dict[str, Tuple[Dict[str, Any], Optional[int]]] = {  # LlamaConfig options, LM rows (None: the tokenizer's)
    "llama-7b": (LLAMA_7B, SPEECHGPT_VOCAB),
    "tinyllama-1.1b": (dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                            intermediate_size=5632, max_position_embeddings=2048), SPEECHGPT_VOCAB),
    "llama-7b-2layers": ({**LLAMA_7B, "num_hidden_layers": 2}, SPEECHGPT_VOCAB),
    "tinyllama_mini": (yaml.safe_load((CONF_DIR / "train_cor_tinyllama_mini.yaml").read_text())
                       ["model_conf"]["lm_config"], None),
}
CORRECTOR_FALLBACKS = ("llama-7b", "tinyllama-1.1b", "llama-7b-2layers")  # largest first
# Memory beyond the corrector's weights: the other components, activations, the KV cache.
HEADROOM_BYTES = 4 * 1024**3
# Seconds of the mixture whose feature frames become the k-means centers (50 frames/s).
PROBE_SECONDS = 10.0


@dataclass(frozen=True)
class SystemSize:
    """Which config (file under CONF_DIR) or shape each component is built from."""

    separator: str
    unit_feature: str  # corrector.units.FEATURE_EXTRACTORS key
    n_units: int  # k-means clusters
    corrector_config: str  # LoRA settings; its LM is replaced by `corrector`'s shape
    corrector: str  # CORRECTOR_SHAPES key
    tokenizer_pieces: int  # SentencePiece vocabulary of the bench's tokenizer (text pieces)
    synthesizer: str
    codec_arch: Dict[str, Any]  # build_dac options
    aligner: str


def mini_codec_arch() -> Dict[str, Any]:
    return yaml.safe_load((CONF_DIR / "train_codec_dac_mini.yaml").read_text())["arch"]


PAPER = SystemSize(
    separator="train_sep_sepformer_paper.yaml", unit_feature="hubert", n_units=1000,
    corrector_config="train_cor_speechgpt_paper.yaml", corrector="llama-7b", tokenizer_pieces=2000,
    synthesizer="train_syn_ar_nar_paper.yaml", codec_arch=DAC_16KHZ_ARCH, aligner="train_ali_cnn.yaml",
)
SIZES = {
    "mini": SystemSize(
        separator="train_sep_sepformer_mini.yaml", unit_feature="logmel", n_units=64,
        corrector_config="train_cor_tinyllama_mini.yaml", corrector="tinyllama_mini", tokenizer_pieces=500,
        synthesizer="train_syn_ar_nar_mini.yaml", codec_arch=mini_codec_arch(), aligner="train_ali_cnn_mini.yaml",
    ),
    "reduced_paper": dataclasses.replace(PAPER, corrector="llama-7b-2layers"),
    "paper": PAPER,
}


@dataclass(frozen=True)
class ForcedDecoding:
    """Decoding lengths that random weights cannot decide, set to those of a trained system."""

    transcript_tokens: int = field(
        default=20,
        metadata={"help": "corrector tokens per chain-of-thought step, the closing '.' / <eoa> included "
                          "(a ~15-word transcript is ~20 LLaMA tokens)"},
    )


@dataclass
class DecodingRecord:
    """What the decoding produced: per corrector prompt (its tokens, the new tokens of its
    generate call), per synthesized segment (T', T''), and the synthesizer block's parts."""

    steps: Dict[str, List[Tuple[int, int]]] = field(default_factory=lambda: {"step I": [], "step II": []})
    ar_frames: List[Tuple[int, int]] = field(default_factory=list)  # (T' in, T'' out)
    template_tokens: int = 0  # step I's prompt without units: its length minus this is the unit count
    synthesizer_parts: RtfMeter = field(default_factory=RtfMeter)  # inside the pipeline's "synthesizer" block

    def clear(self) -> None:
        """Forget the warm-up; in place, since the wrappers hold these containers."""
        for calls in self.steps.values():
            calls.clear()
        self.ar_frames.clear()
        self.synthesizer_parts.components.clear()


@dataclass
class System:
    model: SepALM
    size: str
    corrector_shape: str
    corrector_note: str
    parameters: Dict[str, int]
    record: DecodingRecord


def read_conf(name: str) -> Dict[str, Any]:
    return yaml.safe_load((CONF_DIR / name).read_text())


def count_parameters(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


@contextlib.contextmanager
def built_on(device: str, dtype: torch.dtype = torch.float32) -> Iterator[None]:
    """Parameters created directly on `device` in `dtype`: a 7B LM never exists in float32 on the host."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def llama_parameters(options: Dict[str, Any], vocab_size: int) -> int:
    """Parameters of LlamaForCausalLM (untied embeddings), without building it."""
    hidden, layers, ffn = options["hidden_size"], options["num_hidden_layers"], options["intermediate_size"]
    kv_dim = hidden // options["num_attention_heads"] * options.get("num_key_value_heads", options["num_attention_heads"])
    per_layer = 2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * ffn + 2 * hidden
    return 2 * vocab_size * hidden + layers * per_layer + hidden


def free_bytes(device: str) -> int:
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def choose_corrector(wanted: str, vocab_size: int, device: str, dtype: torch.dtype) -> Tuple[str, str]:
    """(shape, note): `wanted` if its weights fit the device's free memory, else the largest fallback that does."""
    element = torch.empty((), dtype=dtype).element_size()
    available = free_bytes(device)

    def needed(shape: str) -> int:
        options, rows = CORRECTOR_SHAPES[shape]
        return llama_parameters(options, rows or vocab_size) * element + HEADROOM_BYTES

    if needed(wanted) <= available:
        return wanted, ""
    smaller = [shape for shape in CORRECTOR_FALLBACKS if shape != wanted and needed(shape) <= available
               and needed(shape) < needed(wanted)]
    if not smaller:
        raise MemoryError(f"corrector {wanted} needs {needed(wanted) / 1e9:.1f} GB with headroom, "
                          f"{available / 1e9:.1f} GB free on {device}, and no fallback {CORRECTOR_FALLBACKS} fits")
    note = (f"{wanted} does not fit ({needed(wanted) / 1e9:.1f} GB needed with headroom, "
            f"{available / 1e9:.1f} GB free on {device}): {smaller[0]} instead")
    return smaller[0], note


def bench_sentences() -> List[str]:
    """The mini corpus's sentence source, as transcripts: text for the tokenizer and the phoneme list."""
    return [transcript(sentence) for sentence in load_sentences(FORTUNES_DIR, 7, 14)]


def word_piece_ids(tokenizer) -> List[int]:
    """Ids of whole-word alphabetic pieces ("▁HELLO"): one forced token is one transcript word."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    return [index for piece, index in tokenizer.get_vocab().items()
            if index not in special and piece.startswith("▁") and piece[1:].isalpha() and len(piece) > 2]


def single_token_id(tokenizer, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = [index for index in ids if tokenizer.decode([index]) == text] or ids
    if len(ids) != 1:
        raise ValueError(f"the bench tokenizer splits {text!r} into {ids}")
    return ids[0]


class ForcedTranscript:
    """Logits processor (HF `logits_processor`): `length - 1` whole-word tokens, then `closing`,
    then the eos. Runs before temperature / top-k / top-p, so those sample among what it allows."""

    def __init__(self, prompt_length: int, length: int, words: torch.Tensor, closing: int, eos: int):
        self.prompt_length = prompt_length
        self.length = length
        self.words = words  # (V,) bool
        self.closing = closing
        self.eos = eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.size(1) - self.prompt_length
        if step < self.length - 1:
            allowed = self.words[: scores.size(-1)]
        else:
            allowed = torch.zeros(scores.size(-1), dtype=torch.bool, device=scores.device)
            allowed[self.closing if step == self.length - 1 else self.eos] = True
        return scores.masked_fill(~allowed, float("-inf"))


def force_corrector_lengths(generator: CorrectorGenerator, tokens: int, record: DecodingRecord) -> None:
    """Make every chain-of-thought step write exactly `tokens` tokens.

    Bench-only monkeypatch: the generator has no hook for a logits processor (DecodeOptions has
    only max_length, prompt included, which would end step I before its "." and so skip step II),
    so its LM's `generate` is wrapped on this instance to add ForcedTranscript. The generator
    passes `stop_strings` to step I only: that tells the two steps apart.
    """
    tokenizer = generator.tokenizer
    vocab = generator.lm.get_output_embeddings().weight.size(0)
    words = torch.zeros(vocab, dtype=torch.bool, device=generator.device)
    word_ids = word_piece_ids(tokenizer)
    if not word_ids:
        raise ValueError("the bench tokenizer has no whole-word pieces to force transcripts from")
    words[word_ids] = True
    period = single_token_id(tokenizer, ".")
    record.template_tokens = len(encode_prompt(tokenizer, []).input_ids)
    original = generator.lm.generate

    @functools.wraps(original)
    def generate(*, input_ids: torch.Tensor, generation_config, **kwargs):
        step_one = bool(generation_config.stop_strings)
        processor = ForcedTranscript(input_ids.size(1), tokens, words, period if step_one else generator.eoa_id,
                                     generator.eoa_id)
        output = original(input_ids=input_ids, generation_config=generation_config,
                          logits_processor=[processor], **kwargs)
        prompts = kwargs["attention_mask"].sum(dim=1).tolist()  # left-padded batch: each row's own prompt
        new_tokens = int(output.size(1) - input_ids.size(1))
        record.steps["step I" if step_one else "step II"].extend((int(n), new_tokens) for n in prompts)
        return output

    generator.lm.generate = generate


def timed(meter: RtfMeter, part: str, seconds_of: Callable[..., float], function: Callable) -> Callable:
    """`function`, its calls timed into `meter` as `part` (`seconds_of(*args)`: the audio they cover)."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        with meter.time(part, seconds_of(*args)):
            return function(*args, **kwargs)

    return call


def record_synthesizer(resynthesizer: Resynthesizer, record: DecodingRecord) -> None:
    """Measurement wrappers (nothing they wrap changes): T' -> T'' of every AR+NAR generation, and
    the synthesizer block's time split into codec encoding, AR+NAR generation and codec decoding."""
    codec, model = resynthesizer.codec, resynthesizer.model
    original = model.generate

    def generate(est_tokens, est_tokens_lengths, *args, **kwargs):
        tokens, lengths = original(est_tokens, est_tokens_lengths, *args, **kwargs)
        record.ar_frames.extend(zip(est_tokens_lengths.tolist(), lengths.tolist()))  # a batch: one pair per row
        return tokens, lengths

    frame_seconds = 1.0 / codec.frame_rate
    model.generate = timed(record.synthesizer_parts, "AR+NAR generate",
                           lambda est, lengths, *_: int(lengths.sum()) * frame_seconds, generate)
    codec.encode_batch = timed(record.synthesizer_parts, "codec encode",
                               lambda waves: sum(len(wave) for wave in waves) / codec.sample_rate, codec.encode_batch)
    codec.decode = timed(record.synthesizer_parts, "codec decode",
                         lambda tokens, *_: tokens.size(-1) * frame_seconds, codec.decode)


def build_separator(config_name: str, device: str) -> SeparatorModel:
    args = vars(EnhancementTask.get_parser().parse_args([]))
    args.update(read_conf(config_name))
    model = EnhancementTask.build_model(argparse.Namespace(**args)).to(device).eval()
    loaded = LoadedSeparator(model, enh_model_separate_fn(model), model.num_spk, FS, min_input_samples(model), ENH)
    return SeparatorModel(loaded, FS)


def build_units(size: SystemSize, device: str, seed: int):
    """(feature extractor, k-means quantizer). HuBERT: a random HubertModel (HuBERT-base shape),
    saved and loaded back the way a converted checkpoint is. Centers: random feature frames of a
    probe mixture (k-means' initialisation, unfitted), so that consecutive frames of an estimate
    often fall on different centers: 28-34 units a second remain after merging repeats (of 50
    frames), a realistic prompt length; the bench prints the rate."""
    with contextlib.ExitStack() as stack:
        if size.unit_feature == "hubert":
            from transformers import HubertConfig, HubertModel

            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="random_hubert."))
            HubertModel(HubertConfig()).save_pretrained(directory)
            conf = {"model": directory, "layer": 11, "normalize": False}
        else:
            conf = {}
        extractor = build_feature_extractor(size.unit_feature, conf, device)
    features = extractor.extract(synthetic_mixture(PROBE_SECONDS, UNITS_FS, seed + 1))
    rng = np.random.default_rng(seed)
    centers = features[rng.choice(len(features), size.n_units, replace=len(features) < size.n_units)]
    return extractor, KMeansQuantizer(centers)


def build_corrector(size: SystemSize, shape: str, tokenizer, device: str, dtype: torch.dtype) -> AudioLMCorrector:
    """The config's LoRA settings on a random LLaMA of `shape`, created on the device in `dtype`."""
    options, rows = CORRECTOR_SHAPES[shape]
    model_conf = dict(read_conf(size.corrector_config)["model_conf"])
    for training_only in ("lm_name_or_path", "gradient_checkpointing", "extract_feats_in_collect_stats"):
        model_conf.pop(training_only, None)
    model_conf.update(lm_config=options, dtype=str(dtype).replace("torch.", ""))
    with built_on(device, dtype):
        return AudioLMCorrector(vocab_size=max(len(tokenizer), rows or 0), **model_conf).eval()


def build_resynthesizer(size: SystemSize, token_list: TokenList, device: str) -> Resynthesizer:
    config = read_conf(size.synthesizer)
    if config["model"] != "ar_nar":
        raise ValueError(f"{size.synthesizer}: the bench builds the AR+NAR synthesizer, not {config['model']!r}")
    model = ArNarSynthesizer(**config["model_conf"], phoneme_vocab_size=len(token_list)).to(device).eval()
    codec = DacCodec(build_dac(**size.codec_arch), n_codebooks=model.num_codebooks, device=device)
    return Resynthesizer(model, codec, token_list, SynthesisOptions(length_policy="exact"))


def build_aligner(config_name: str, device: str) -> AlignerInference:
    config = read_conf(config_name)
    model = AlignerBuilder.build_model(argparse.Namespace(model=config["model"], model_conf=config["model_conf"]))
    return AlignerInference(model.to(device), int(config["model_conf"]["fs"]))


def build_system(size_name: str, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 corrector_shape: Optional[str] = None, forced: ForcedDecoding = ForcedDecoding(),
                 seed: int = 0) -> System:
    """Every component at `size_name` (SIZES), random weights; the corrector in `dtype` (the
    others take float32 inputs and stay float32). corrector_shape: a CORRECTOR_SHAPES key instead
    of the size's (never replaced by a fallback)."""
    size = SIZES[size_name]
    torch.manual_seed(seed)
    sentences = bench_sentences()
    tokenizer = train_sentencepiece_tokenizer(sentences, size.tokenizer_pieces)
    add_unit_tokens(tokenizer, size.n_units)
    if corrector_shape is not None:
        shape, note = corrector_shape, "chosen with --corrector_shape"
    else:
        rows = CORRECTOR_SHAPES[size.corrector][1] or len(tokenizer)
        shape, note = choose_corrector(size.corrector, max(rows, len(tokenizer)), device, dtype)
    g2p = G2p(G2P_LANGUAGE)
    token_list = TokenList.build(g2p(sentences[:500]))
    record = DecodingRecord()

    separator = build_separator(size.separator, device)
    extractor, quantizer = build_units(size, device, seed)
    corrector = build_corrector(size, shape, tokenizer, device, dtype)
    generator = CorrectorGenerator(corrector, tokenizer)
    force_corrector_lengths(generator, forced.transcript_tokens, record)
    resynthesizer = build_resynthesizer(size, token_list, device)
    record_synthesizer(resynthesizer, record)
    aligner = build_aligner(size.aligner, device)
    model = SepALM(separator, extractor, quantizer, generator, g2p, resynthesizer, aligner, options=PipelineOptions())
    parameters = {
        "separator": count_parameters(separator.model),
        "units": count_parameters(extractor.model) if hasattr(extractor, "model") else 0,
        "corrector": count_parameters(corrector),
        "synthesizer": count_parameters(resynthesizer.model),
        "codec": count_parameters(resynthesizer.codec.model),
        "aligner": count_parameters(aligner.model),
    }
    return System(model, size_name, shape, note, parameters, record)


def synthetic_mixture(seconds: float, fs: int, seed: int) -> np.ndarray:
    """Two 'talkers' of noise shaped by syllable-rate envelopes (3-6 Hz, with pauses), summed
    at about -25 dBFS: no dataset needed, and the separator and units see speech-like dynamics."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    mixture = np.zeros_like(t)
    for _ in range(2):
        rate = rng.uniform(3.0, 6.0)
        envelope = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
        pauses = np.sin(2 * np.pi * rng.uniform(0.2, 0.4) * t + rng.uniform(0, 2 * np.pi)) > -0.6
        talker = np.convolve(rng.standard_normal(len(t)), np.hanning(rng.integers(4, 24)), mode="same")
        mixture += envelope * pauses * talker / np.std(talker)
    return (0.056 * mixture / max(np.std(mixture), 1e-9)).astype(np.float32)


def describe(system: System, dtype: str) -> List[str]:
    """One line per component: what was built, and its parameters."""
    size = SIZES[system.size]
    model = system.model
    lm = system.model.corrector.lm
    lora = read_conf(size.corrector_config)["model_conf"]
    lora_text = (f"LoRA r {lora['lora_rank']} on {','.join(lora['lora_target_modules'])}" if lora.get("use_lora")
                 else "no LoRA")
    p = {name: count / 1e6 for name, count in system.parameters.items()}
    codec = model.resynthesizer.codec
    lines = [
        f"separator    {p['separator']:9.1f}M  {size.separator}",
        f"units        {p['units']:9.1f}M  {size.unit_feature} features, {size.n_units} random k-means centers",
        f"corrector    {p['corrector']:9.1f}M  {system.corrector_shape} shape ({lm.config.num_hidden_layers} layers, "
        f"hidden {lm.config.hidden_size}, vocab {lm.get_output_embeddings().weight.size(0)}), {dtype}, {lora_text}",
        f"synthesizer  {p['synthesizer']:9.1f}M  {size.synthesizer}, {len(model.resynthesizer.token_list)} phonemes, "
        f"length_policy exact",
        f"codec        {p['codec']:9.1f}M  DAC {codec.n_codebooks} x {codec.codebook_size} at {codec.sample_rate} Hz",
        f"aligner      {p['aligner']:9.3f}M  {size.aligner}",
    ]
    if system.corrector_note:
        lines.append(f"note: corrector {system.corrector_note}")
    return lines
