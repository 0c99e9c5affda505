"""The synthesizer (stage 10, paper §3.4) as an ESPnet task: `model: ar_nar | masked` + `model_conf`.

Data names (`--{train,valid}_data_path_and_name_and_type PATH,NAME,TYPE`):
- est_tokens, kaldi_ark: DAC tokens of the separated estimate Ŝ, (T', Q) per key (token_io);
- ref_tokens, kaldi_ark: DAC tokens of the clean reference S; needed for training only;
- phonemes, text: the G2P output ("h ə l oʊ | w ɜː l d"), turned into ids with --token_list
  (<unk> for phonemes missing from it); the condition of ar_nar and of masked with
  `condition: phoneme`;
- semantic, text_int: semantic token ids from the text-to-semantic model, any length (the
  masked model stretches them to T'); the condition of masked with `condition: semantic`.
Integer streams are padded with PAD_ID and come with `<name>_lengths`.
"""
from __future__ import annotations

import argparse
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.types import str_or_none

from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID
from sepalm_espnet.synthesizer.masked import MaskedSynthesizer

model_choices = ClassChoices(
    name="model",
    classes=dict(ar_nar=ArNarSynthesizer, masked=MaskedSynthesizer),
    type_check=AbsESPnetModel,
    default="ar_nar",
)


def load_token_list(token_list: Union[None, str, Sequence[str]]) -> Optional[TokenList]:
    """--token_list is a file on the command line and a list once saved in config.yaml."""
    if token_list is None:
        return None
    if isinstance(token_list, str):
        return TokenList.from_file(token_list)
    return TokenList(token_list)


class PhonemesToIds:
    """ESPnet preprocess_fn: the `phonemes` text of an utterance -> int64 ids."""

    def __init__(self, token_list: Optional[TokenList]):
        self.token_list = token_list

    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        if "phonemes" in data:
            if self.token_list is None:
                raise ValueError(f"{uid}: the phonemes data needs --token_list")
            data["phonemes"] = np.asarray(self.token_list.encode(data["phonemes"]), dtype=np.int64)
        return data


class SynthesizerTask(AbsTask):
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
            help="phoneme token list (stage 9's, one token a line); needed with phonemes data",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(int_pad_value=PAD_ID)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]:
        return PhonemesToIds(load_token_list(args.token_list))

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("est_tokens",) if inference else ("est_tokens", "ref_tokens")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("phonemes", "semantic")

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> Union[ArNarSynthesizer, MaskedSynthesizer]:
        token_list = load_token_list(args.token_list)
        phoneme_conf = {}
        if token_list is not None:
            args.token_list = token_list.tokens  # config.yaml then carries the list itself
            phoneme_conf["phoneme_vocab_size"] = len(token_list)
        return model_choices.get_class(args.model)(**args.model_conf, **phoneme_conf)
