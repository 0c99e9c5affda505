"""The public API: run a trained system on audio.

    from sepalm_espnet.inference import SepALM, SeparatorModel

    speakers = SepALM.from_pretrained("sepalm.zip").separate("mixture.wav")
    estimates = SeparatorModel.from_pretrained("sep.zip").separate("mixture.wav")

`src` is a packed archive (.zip, see sepalm_espnet/zoo.py), its unpacked directory, or (for
SeparatorModel) an ESPnet experiment directory (config.yaml + checkpoint). The names are
defined in sepalm_espnet.pipeline and the modules below it; this module is the top of the
package's layers (see sepalm_espnet/__init__.py), so nothing inside the package imports it.
"""
from sepalm_espnet.corrector.generate import DecodeOptions
from sepalm_espnet.pipeline import (
    DEFAULT_CHECKPOINT,
    MODES,
    AudioInput,
    PipelineOptions,
    SeparatedSpeaker,
    SeparatorModel,
    SepALM,
)
from sepalm_espnet.separator.long_audio import SegmentOptions
from sepalm_espnet.synthesizer.resynthesize import SynthesisOptions
from sepalm_espnet.zoo import resolve_pretrained

__all__ = [
    "DEFAULT_CHECKPOINT",
    "MODES",
    "AudioInput",
    "DecodeOptions",
    "PipelineOptions",
    "SegmentOptions",
    "SeparatedSpeaker",
    "SeparatorModel",
    "SepALM",
    "SynthesisOptions",
    "resolve_pretrained",
]
