"""The audio-LM corrector (paper §3.3): one causal LM reads speech units and writes both transcripts.

Any transformers causal LM of the LLaMA family serves: SpeechGPT-7B-cm from a local directory
or hub id, fine-tuned with LoRA (paper §4.2: r = 8 on q, k, v, o: 8.4M trainable parameters),
or, for the offline mini recipe, a small LlamaForCausalLM built from a config and trained from
scratch. The loss is L_asr + L_ger (eq. 5, 6), each the mean token cross-entropy of its span.

ESPnet's trainer sees an ordinary AbsESPnetModel. Two things differ from a small model:
- ESPnet casts the whole model to `--train_dtype`: `train_dtype: bfloat16` trains the adapters
  in bf16 too (half the memory of float32 + `use_amp`, which keeps them in float32).
- With LoRA on a pretrained LM, state dicts (every checkpoint, average and resume) hold only
  what training changes; the frozen weights reload from `lm_name_or_path`, which config.yaml
  records. A 7B checkpoint is then megabytes instead of 13 GB per epoch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from sepalm_espnet.corrector.prompt import CORRECTED_SPAN, PRELIMINARY_SPAN, PROMPT_SPAN, label_spans

PAPER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


class LoRACausalLM(AbsESPnetModel):
    """A causal LM, pretrained (frozen, LoRA adapters) or from scratch, as ESPnet sees a model.

    Shared by the audio-LM corrector and the cascade's text corrector (ger_model), which differ
    only in their prompt and loss (`forward`).
    """

    def __init__(
        self,
        vocab_size: int,
        lm_name_or_path: Optional[str] = None,
        lm_config: Optional[Dict] = None,
        dtype: str = "float32",
        use_lora: bool = True,
        lora_rank: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: Sequence[str] = PAPER_LORA_TARGETS,
        gradient_checkpointing: bool = False,
        extract_feats_in_collect_stats: bool = False,
    ):
        """
        Args:
            vocab_size: len(tokenizer) (e.g. unit tokens included); the LM's embeddings grow to it.
            lm_name_or_path: pretrained causal LM (directory or hub id). Exactly one of this
                and `lm_config`.
            lm_config: LlamaConfig options of a model trained from scratch (vocab_size aside).
            dtype: weights as loaded, e.g. bfloat16 for a 7B LM (ESPnet's `--train_dtype`
                then decides the training dtype).
            use_lora: train LoRA adapters (plus the rows of tokens the base LM lacked);
                false trains every parameter.
            gradient_checkpointing: recompute activations in backward (long prompts on a 7B LM).
            extract_feats_in_collect_stats: ESPnet reads this model_conf key to skip
                building the model for --collect_stats; there are no features to collect.
        """
        super().__init__()
        if (lm_name_or_path is None) == (lm_config is None):
            raise ValueError("give exactly one of lm_name_or_path (pretrained) and lm_config (from scratch)")
        torch_dtype = getattr(torch, dtype)
        if lm_name_or_path is not None:
            lm = AutoModelForCausalLM.from_pretrained(lm_name_or_path, dtype=torch_dtype)
        else:
            lm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, **lm_config)).to(torch_dtype)
        base_vocab_size = lm.get_input_embeddings().num_embeddings
        if vocab_size > base_vocab_size:
            lm.resize_token_embeddings(vocab_size)
        if gradient_checkpointing:
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

        self.use_lora = use_lora
        self.extract_feats_in_collect_stats = extract_feats_in_collect_stats
        self._pretrained_weight_hooks = []
        if use_lora:
            new_token_ids = list(range(base_vocab_size, vocab_size))
            lm = get_peft_model(
                lm,
                LoraConfig(
                    task_type=TaskType.CAUSAL_LM,
                    r=lora_rank,
                    lora_alpha=lora_alpha,
                    lora_dropout=lora_dropout,
                    target_modules=list(lora_target_modules),
                    bias="none",
                    trainable_token_indices=_embedding_rows(lm, new_token_ids) if new_token_ids else None,
                ),
            )
        self.lm = lm
        if use_lora and lm_name_or_path is not None:
            self._keep_pretrained_weights_out_of_state_dicts()

    def teacher_forced_logits(self, input_ids: torch.Tensor, input_ids_lengths: torch.Tensor,
                              labels_lengths: torch.Tensor) -> torch.Tensor:
        """(B, L, V) logits of a padded batch, padding masked out; the loss is the subclass's."""
        if not torch.equal(input_ids_lengths, labels_lengths):
            raise ValueError("input_ids and labels of an utterance must have the same length")
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        attention_mask = (positions[None, :] < input_ids_lengths[:, None]).long()
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Nothing to normalise: the inputs are token ids."""
        return {}

    def save_adapter(self, directory: Union[str, Path]) -> None:
        """peft's adapter directory (adapter_config.json + weights): PeftModel.from_pretrained loads it."""
        if not self.use_lora:
            raise ValueError("this corrector has no LoRA adapter (use_lora: false): use save_merged")
        self.lm.save_pretrained(str(directory))

    def merge_lora(self) -> None:
        """Fold the adapters into the base weights, for export or faster inference; irreversible."""
        if not self.use_lora:
            return
        for handle in self._pretrained_weight_hooks:
            handle.remove()
        self._pretrained_weight_hooks = []
        self.lm = self.lm.merge_and_unload()
        self.use_lora = False

    def save_merged(self, directory: Union[str, Path]) -> None:
        """A plain transformers model directory (adapters merged): no peft needed to load it."""
        self.merge_lora()
        self.lm.save_pretrained(str(directory))

    def _keep_pretrained_weights_out_of_state_dicts(self) -> None:
        frozen = [name for name, param in self.named_parameters() if not param.requires_grad]

        def drop_frozen(module, state_dict, prefix, local_metadata):
            for name in frozen:
                state_dict.pop(prefix + name, None)

        def keep_frozen(module, state_dict, prefix, *args):
            parameters = dict(module.named_parameters())
            for name in frozen:
                state_dict.setdefault(prefix + name, parameters[name])

        self._pretrained_weight_hooks = [
            self.register_state_dict_post_hook(drop_frozen),
            self.register_load_state_dict_pre_hook(keep_frozen),
        ]


class AudioLMCorrector(LoRACausalLM):
    """SpeechGPT-style corrector: units in, `Preliminary … Corrected … <eoa>` out (eq. 2-6)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        input_ids_lengths: torch.Tensor,
        labels: torch.Tensor,
        labels_lengths: torch.Tensor,
        utt_id: Optional[List[str]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Teacher-forced loss L_asr + L_ger; `utt_id` is what ESPnet's trainer adds to every batch."""
        logits = self.teacher_forced_logits(input_ids, input_ids_lengths, labels_lengths)

        # Token t predicts token t + 1; only learned positions are scored (saves a float copy
        # of the full vocabulary x sequence logits).
        targets = labels[:, 1:]
        spans = label_spans(targets)
        learned = spans != PROMPT_SPAN
        scored_logits = logits[:, :-1][learned].float()
        token_nll = F.cross_entropy(scored_logits, targets[learned], reduction="none")
        token_correct = (scored_logits.argmax(-1) == targets[learned]).float()
        spans = spans[learned]

        loss_asr = _span_mean(token_nll, spans == PRELIMINARY_SPAN, "preliminary")
        loss_ger = _span_mean(token_nll, spans == CORRECTED_SPAN, "corrected")
        loss = loss_asr + loss_ger
        stats = dict(
            loss=loss.detach(),
            loss_asr=loss_asr.detach(),
            loss_ger=loss_ger.detach(),
            acc=token_correct.mean(),
            acc_asr=_span_mean(token_correct, spans == PRELIMINARY_SPAN, "preliminary"),
            acc_ger=_span_mean(token_correct, spans == CORRECTED_SPAN, "corrected"),
        )
        return force_gatherable((loss, stats, input_ids.size(0)), loss.device)


def _embedding_rows(lm, token_ids: List[int]) -> Union[List[int], Dict[str, List[int]]]:
    """peft's trainable_token_indices for tokens new to the LM: input rows and, if untied, output rows."""
    if lm.config.tie_word_embeddings:
        return token_ids
    names = {module: name for name, module in lm.named_modules()}
    return {names[lm.get_input_embeddings()]: token_ids, names[lm.get_output_embeddings()]: token_ids}


def _span_mean(values: torch.Tensor, in_span: torch.Tensor, span: str) -> torch.Tensor:
    if not bool(in_span.any()):
        raise ValueError(f"batch without {span} transcript tokens: labels were not made by encode_prompt")
    return values[in_span].mean()
