"""Separators (SepFormer) and segment-wise long-audio inference.

Import `sepalm_espnet.separator.registry` to make `separator: sepformer` available to ESPnet's
enh task; it is not imported here because loading `espnet2.tasks.enh` takes many seconds.
"""
from sepalm_espnet.separator.long_audio import LongAudioSeparator, separate_scp
from sepalm_espnet.separator.sepformer import SepFormerSeparator

__all__ = ["LongAudioSeparator", "SepFormerSeparator", "separate_scp"]
