"""The cascade's text corrector fine-tuned (paper Table 3 (e)): N-best prompt in, one transcript line out.

Generative error correction (GER) of HyPoradise (Chen et al., 2023) as the paper's cascaded
baseline runs it: a causal LM reads the N best Whisper hypotheses of the separated speech in
HyPoradise's prompt (`build_ger_prompt`) and writes the transcription on the next line. Fine-
tuned, it learns the Whisper teacher's transcript of the clean speech (`text_ct`, the corrector's
distillation target), one line ended by LINE_END; the loss is the mean token cross-entropy of
that line only (the prompt is labelled IGNORE_INDEX).

The LM and its LoRA adapters are the corrector's (`model.LoRACausalLM`): paper §4.2's r = 8 on
q, k, v, o by default, frozen weights reloaded from `lm_name_or_path` and kept out of every
state dict. Zero-shot, the same prompt and decoding give row (f) (`cascade.GerCorrector`).

Prompt and target are plain text: hypotheses and target are single-spaced, and the `nbest` files
the cascade writes (`key hyp1 ||| hyp2 ||| hyp3`) hold the normalised hypotheses that training
and inference both prompt with.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable

from sepalm_espnet.corrector.model import LoRACausalLM
from sepalm_espnet.corrector.prompt import IGNORE_INDEX, EncodedPrompt

NBEST_SEPARATOR = " ||| "
GER_PROMPT = (
    "Below is the best-hypotheses transcribed from speech recognition system. Please try to revise it "
    "using the words which are only included into other-hypothesis, and write the response for the "
    "true transcription.\n\n### Best-hypothesis:\n{best}\n\n### Other-hypothesis:\n{others}\n\n### Response:\n"
)
LINE_END = "\n"  # ends the answer: training appends it, decoding stops at it


def _single_spaced(text: str) -> str:
    return " ".join(text.split())


def build_ger_prompt(hypotheses: Sequence[str]) -> str:
    """HyPoradise's prompt: the best hypothesis, the others one per line, then the response."""
    if not hypotheses:
        raise ValueError("an N-best list needs at least one hypothesis")
    best, *others = [_single_spaced(h) for h in hypotheses]
    return GER_PROMPT.format(best=best, others="\n".join(others))


def join_nbest(hypotheses: Sequence[str]) -> str:
    """The value of an `nbest` line."""
    return NBEST_SEPARATOR.join(hypotheses)


def split_nbest(value: str) -> List[str]:
    """An `nbest` line's value back into its hypotheses (empty ones included: `a ||| ||| c`)."""
    return [_single_spaced(h) for h in value.split(NBEST_SEPARATOR.strip())]


def encode_ger_example(tokenizer, hypotheses: Sequence[str], target: Optional[str] = None) -> EncodedPrompt:
    """Ids of the prompt as inference tokenizes it (`tokenizer(prompt)`, BOS included) and, with a
    target, of `target + LINE_END` after it; only the target's ids are labelled."""
    input_ids = list(tokenizer(build_ger_prompt(hypotheses))["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    if target is not None:
        target_ids = tokenizer(_single_spaced(target) + LINE_END, add_special_tokens=False)["input_ids"]
        input_ids += target_ids
        labels += target_ids
    return EncodedPrompt(input_ids=input_ids, labels=labels)


class GerLoRAModel(LoRACausalLM):
    """A causal LM (LoRA on a pretrained one, or a tiny one from scratch) learning N-best -> transcript."""

    def forward(
        self,
        input_ids: torch.Tensor,
        input_ids_lengths: torch.Tensor,
        labels: torch.Tensor,
        labels_lengths: torch.Tensor,
        utt_id: Optional[List[str]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Teacher-forced cross-entropy of the target line; `utt_id` is what ESPnet's trainer adds."""
        logits = self.teacher_forced_logits(input_ids, input_ids_lengths, labels_lengths)

        targets = labels[:, 1:]  # token t predicts token t + 1
        learned = targets != IGNORE_INDEX
        if not bool(learned.any()):
            raise ValueError("batch without target tokens: labels were not made by encode_ger_example")
        scored_logits = logits[:, :-1][learned].float()
        loss = F.cross_entropy(scored_logits, targets[learned])
        # Whole lines right: what greedy decoding needs to reproduce a target.
        token_correct = scored_logits.argmax(-1) == targets[learned]
        row_of_token = torch.arange(targets.size(0), device=targets.device)[:, None].expand_as(targets)[learned]
        wrong_per_row = torch.zeros(targets.size(0), device=targets.device).index_add_(
            0, row_of_token, (~token_correct).float())
        stats = dict(loss=loss.detach(), acc=token_correct.float().mean(),
                     line_acc=(wrong_per_row == 0).float().mean())
        return force_gatherable((loss, stats, input_ids.size(0)), loss.device)
