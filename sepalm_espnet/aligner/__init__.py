"""The aligner (paper §3.5): ŝ and the re-synthesized s* mixed per STFT bin into the final s̃.

`sepalm_espnet.tasks.aligner` trains it through ESPnet (stage 12).
"""
from sepalm_espnet.aligner.model import AbsAligner, AlignerModel, STFTAligner, fit_synthesized_length

__all__ = ["AbsAligner", "AlignerModel", "STFTAligner", "fit_synthesized_length"]
