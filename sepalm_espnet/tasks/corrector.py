"""The corrector as an ESPnet task (stage 7): ESPnet's trainer, data loading, DDP, resume, averaging.

Data, in Kaldi text form, one line per separated-speaker utterance:
    units    `key 12 45 7`            (stage 6, `--*_data_path_and_name_and_type units,units,text`)
    text_pt  `key PRELIMINARY WORDS`  (stage 5, Whisper on the separated speech)
    text_ct  `key CORRECTED WORDS`    (stage 5, Whisper on the clean speech)
ESPnet's `text` loader hands the preprocessor strings; it turns them into the prompt's
input_ids and labels (corrector.prompt). The tokenizer is a transformers directory with the
unit tokens (`--tokenizer_dir`, made by `python -m sepalm_espnet.bin.train_tokenizer`).
The `model` slot is a registry: `model: audio_lm` + `model_conf: {...}` in the YAML config.
"""
from __future__ import annotations

import argparse
from typing import Callable, Collection, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.preprocessor import AbsPreprocessor
from espnet2.train.trainer import Trainer
from espnet2.utils.types import str_or_none
from torch.nn.utils.rnn import pad_sequence

from sepalm_espnet.corrector.model import AudioLMCorrector
from sepalm_espnet.corrector.prompt import IGNORE_INDEX, encode_prompt
from sepalm_espnet.corrector.tokenizer import check_corrector_tokenizer, load_tokenizer, padding_token_id

model_choices = ClassChoices(
    "model",
    classes=dict(audio_lm=AudioLMCorrector),
    type_check=AbsESPnetModel,
    default="audio_lm",
)


class CorrectorPreprocessor(AbsPreprocessor):
    """units + transcripts (strings) -> input_ids + labels; units alone -> the generation prefix."""

    def __init__(self, train: bool, tokenizer_dir: str):
        super().__init__(train)
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.n_units = check_corrector_tokenizer(self.tokenizer)

    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        encoded = encode_prompt(
            self.tokenizer, self._units(uid, data["units"]), data.get("text_pt"), data.get("text_ct")
        )
        return dict(
            input_ids=np.asarray(encoded.input_ids, dtype=np.int64),
            labels=np.asarray(encoded.labels, dtype=np.int64),
        )

    def _units(self, uid: str, text: str) -> List[int]:
        try:
            units = [int(unit) for unit in text.split()]
        except ValueError:
            raise ValueError(f"utterance {uid}: units must be integers, got {text[:100]!r}") from None
        out_of_range = [unit for unit in units if not 0 <= unit < self.n_units]
        if out_of_range:
            raise ValueError(
                f"utterance {uid}: unit {out_of_range[0]} outside the tokenizer's {self.n_units} unit tokens"
            )
        return units


class CorrectorCollateFn:
    """Right-pads input_ids with the pad id and labels with IGNORE_INDEX; adds ESPnet's *_lengths."""

    def __init__(self, pad_token_id: int):
        self.pad_values = dict(input_ids=pad_token_id, labels=IGNORE_INDEX)

    def __call__(
        self, data: Collection[Tuple[str, Dict[str, np.ndarray]]]
    ) -> Tuple[List[str], Dict[str, torch.Tensor]]:
        uttids = [uttid for uttid, _ in data]
        batch: Dict[str, torch.Tensor] = {}
        for name, pad_value in self.pad_values.items():
            sequences = [torch.from_numpy(example[name]) for _, example in data]
            batch[name] = pad_sequence(sequences, batch_first=True, padding_value=pad_value)
            batch[f"{name}_lengths"] = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
        return uttids, batch


class CorrectorTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        # ESPnet's way of a required option that still lets --print_config run without it.
        required = parser.get_default("required")
        required += ["tokenizer_dir"]
        group.add_argument(
            "--tokenizer_dir",
            type=str_or_none,
            default=None,
            help="transformers tokenizer directory holding the unit tokens (bin/train_tokenizer.py)",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)
        return parser

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return CorrectorCollateFn(padding_token_id(load_tokenizer(args.tokenizer_dir)))

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        return CorrectorPreprocessor(train, args.tokenizer_dir)

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("units",) if inference else ("units", "text_pt", "text_ct")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        # At inference a given preliminary transcript yields the prefix of the second step.
        return ("text_pt",) if inference else ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> AbsESPnetModel:
        tokenizer = load_tokenizer(args.tokenizer_dir)
        check_corrector_tokenizer(tokenizer)
        model_class = model_choices.get_class(args.model)
        return model_class(vocab_size=len(tokenizer), **args.model_conf)
