"""SLM-SS, the generative separator, as an ESPnet task: `model: slm_ss` + `model_conf`, and
`--codec` (the codec whose tokens the model learnt to generate).

Data names (`--{train,valid}_data_path_and_name_and_type PATH,NAME,TYPE`), keyed by mixture:
- speech_mix, sound: the mixture, at the encoder's sample rate (the recipe's --fs);
- ref_tokens1, ref_tokens2, kaldi_ark: codec tokens (T', Q) of each speaker's clean reference
  (stage 3 makes them with `--codec`); needed for training only.
Waveforms are zero-padded in a batch and token streams padded with PAD_ID (CommonCollateFn
adds the `*_lengths`).
"""
from __future__ import annotations

import argparse
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.types import str_or_none

from sepalm_espnet.slm_ss.model import SlmSsModel
from sepalm_espnet.synthesizer.layers import PAD_ID

model_choices = ClassChoices(
    name="model",
    classes=dict(slm_ss=SlmSsModel),
    type_check=AbsESPnetModel,
    default="slm_ss",
)
SPEAKER_TOKENS = ("ref_tokens1", "ref_tokens2")


class SlmSsTask(AbsTask):
    """`--model slm_ss --model_conf {...} --codec DAC_TAG_OR_FILE_OR_ENCODEC_DIR`."""

    num_optimizers: int = 1
    class_choices_list = [model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--codec",
            type=str_or_none,
            default=None,
            help="the codec of the ref_tokens (DAC release tag or file, EnCodec dir); inference decodes with it, "
                 "so config.yaml keeps it (a packed archive carries the file)",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=PAD_ID)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        return None

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech_mix",) if inference else ("speech_mix", *SPEAKER_TOKENS)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> SlmSsModel:
        return model_choices.get_class(args.model)(**(args.model_conf or {}))
