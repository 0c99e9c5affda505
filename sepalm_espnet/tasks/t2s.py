"""The text-to-semantic model (stage 10 helper of the masked synthesizer) as an ESPnet task.

Data names (`--{train,valid}_data_path_and_name_and_type PATH,NAME,TYPE`):
- phonemes, text: G2P output ("h ə l oʊ | w ɜː l d"), read into ids with --token_list (stage 9's);
- units, text_int: the stage-6 units of the clean speech (`key 12 45 7`); training only.
`model: transformer` + `model_conf` (unit_vocab_size must match the k-means clusters).
"""
from __future__ import annotations

import argparse
from typing import Tuple

from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices

from sepalm_espnet.synthesizer.t2s_model import TextToSemantic
from sepalm_espnet.tasks.synthesizer import SynthesizerTask, load_token_list

model_choices = ClassChoices(
    name="model",
    classes=dict(transformer=TextToSemantic),
    type_check=AbsESPnetModel,
    default="transformer",
)


class TextToSemanticTask(SynthesizerTask):
    """The synthesizer task's phoneme handling (--token_list, PhonemesToIds, padding), its own
    model slot and data: phonemes -> units."""

    class_choices_list = [model_choices]

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("phonemes",) if inference else ("phonemes", "units")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> TextToSemantic:
        token_list = load_token_list(args.token_list)
        if token_list is None:
            raise ValueError("the text-to-semantic task needs --token_list (the phoneme list of stage 9)")
        args.token_list = token_list.tokens  # config.yaml then carries the list itself
        return model_choices.get_class(args.model)(**args.model_conf, phoneme_vocab_size=len(token_list))
