"""The aligner (stage 12) as an ESPnet task: `model: stft_cnn`, trained on (ŝ, s*, s) triples.

Each data directory holds three aligned scps, one line per separated estimate: speech_est (ŝ),
speech_syn (its re-synthesized s*) and speech_ref (the clean reference matched to it by the
stored permutation). Training goes through ESPnet's own trainer. The configs use the sequence
iterator: whole triples, padded in a batch by CommonCollateFn, which adds the `*_lengths` that
AlignerModel masks the padding with (a padded item's loss and gradient are those it has
alone). The chunk iterator (random crops at one offset for the three signals; ESPnet 202511's
needs numpy < 2.4) works too, but its half-overlapping crops compute most samples twice.
"""
from __future__ import annotations

import argparse
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer

from sepalm_espnet.aligner.model import ALIGNERS, AbsAligner, AlignerBuilder, AlignerModel, fit_synthesized_length

model_choices = ClassChoices(
    name="model",
    classes=dict(ALIGNERS),
    type_check=AbsAligner,
    default="stft_cnn",
)


class AlignerTask(AbsTask):
    """Stage 12: `--model stft_cnn --model_conf {...}`, loss -SI-SNR, best model on valid loss."""

    num_optimizers: int = 1
    class_choices_list = [model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=0)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        return fit_synthesized_length

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        if inference:
            return ("speech_est", "speech_syn")
        return ("speech_est", "speech_syn", "speech_ref")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech_ref",) if inference else ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> AlignerModel:
        return AlignerBuilder.build_model(args)
