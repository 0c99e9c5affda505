"""The re-separation ablation (paper Table 3 Exp. (a)) as an ESPnet task: `model:
transcript_sepformer` + `model_conf`, trained with -SI-SNR on one example per separated speaker.

Data names (`--{train,valid}_data_path_and_name_and_type PATH,NAME,TYPE`), all keyed
`<utt>_spk<n>`:
- speech_mix, sound: the mixture the speaker was separated from (the same file for every n);
- phonemes, text: that speaker's corrected transcript after G2P ("h ə l oʊ | w ɜː l d"), turned
  into ids with --token_list (<unk> for phonemes missing from it), as the synthesizer's;
- speech_ref, sound: the clean reference of that speaker; needed for training only.
Whole utterances are padded in a batch (CommonCollateFn adds the `*_lengths`).
"""
from __future__ import annotations

import argparse
from typing import Callable, Collection, Dict, List, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.types import str_or_none

from sepalm_espnet.separator.reseparation import RESEPARATORS, ReseparatorBuilder, TranscriptSepFormerModel
from sepalm_espnet.synthesizer.layers import PAD_ID
from sepalm_espnet.tasks.synthesizer import PhonemesToIds, load_token_list

model_choices = ClassChoices(
    name="model",
    classes=dict(RESEPARATORS),
    type_check=torch.nn.Module,
    default="transcript_sepformer",
)


class ReseparationTask(AbsTask):
    """Table 3 (a): `--model transcript_sepformer --model_conf {...} --token_list FILE`."""

    num_optimizers: int = 1
    class_choices_list = [model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--token_list",
            type=str_or_none,
            default=None,
            help="phoneme token list (stage 9's, one token a line); saved into config.yaml as a list",
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
    ) -> Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]:
        return PhonemesToIds(load_token_list(args.token_list))

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        if inference:
            return ("speech_mix", "phonemes")
        return ("speech_mix", "phonemes", "speech_ref")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech_ref",) if inference else ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> TranscriptSepFormerModel:
        return ReseparatorBuilder.build_model(args)
