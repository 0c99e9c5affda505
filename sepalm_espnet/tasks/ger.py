"""The cascade's text corrector as an ESPnet task (paper Table 3 (e)): ESPnet's trainer, DDP, resume.

Data, in Kaldi text form, one line per separated-speaker utterance:
    nbest    `key HYP1 ||| HYP2 ||| HYP3`  (bin/cascade_correct --nbest_only on the set's estimates)
    text_ct  `key TEACHER WORDS`           (stage 5, Whisper on the clean speech)
The preprocessor turns ESPnet's strings into the prompt's input_ids and labels
(ger_model.encode_ger_example) with the LM's own tokenizer (`--tokenizer_dir`, a transformers
directory: for a pretrained LM, usually the LM's directory). The `model` slot is a registry:
`model: ger_lora` + `model_conf: {...}` in the YAML config.
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.preprocessor import AbsPreprocessor
from espnet2.train.trainer import Trainer
from espnet2.utils.types import str_or_none

from sepalm_espnet.corrector.ger_model import GerLoRAModel, encode_ger_example, split_nbest
from sepalm_espnet.corrector.tokenizer import load_tokenizer, padding_token_id
from sepalm_espnet.tasks.corrector import CorrectorCollateFn

model_choices = ClassChoices(
    "model",
    classes=dict(ger_lora=GerLoRAModel),
    type_check=AbsESPnetModel,
    default="ger_lora",
)


class GerPreprocessor(AbsPreprocessor):
    """nbest + text_ct (strings) -> input_ids + labels; nbest alone -> the prompt to continue."""

    def __init__(self, train: bool, tokenizer_dir: str):
        super().__init__(train)
        self.tokenizer = load_tokenizer(tokenizer_dir)

    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        encoded = encode_ger_example(self.tokenizer, split_nbest(data["nbest"]), data.get("text_ct"))
        return dict(
            input_ids=np.asarray(encoded.input_ids, dtype=np.int64),
            labels=np.asarray(encoded.labels, dtype=np.int64),
        )


class GerTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        required = parser.get_default("required")  # required, yet --print_config runs without it
        required += ["tokenizer_dir"]
        group.add_argument(
            "--tokenizer_dir", type=str_or_none, default=None,
            help="transformers tokenizer directory of the LM (for a pretrained LM, its own directory)",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)
        return parser

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return CorrectorCollateFn(padding_token_id(load_tokenizer(args.tokenizer_dir)))

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        return GerPreprocessor(train, args.tokenizer_dir)

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("nbest",) if inference else ("nbest", "text_ct")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> AbsESPnetModel:
        model_class = model_choices.get_class(args.model)
        return model_class(vocab_size=len(load_tokenizer(args.tokenizer_dir)), **args.model_conf)
