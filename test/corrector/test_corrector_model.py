"""AudioLMCorrector on tiny LLaMAs: unit tokens, LoRA parameter counts, loss, gradients, export."""
import math

import numpy as np
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from sepalm_espnet.corrector.model import AudioLMCorrector
from sepalm_espnet.corrector.prompt import EOA, encode_prompt
from sepalm_espnet.corrector.tokenizer import (
    add_unit_tokens,
    corrector_tokens,
    count_unit_tokens,
    load_tokenizer,
    train_sentencepiece_tokenizer,
)
from sepalm_espnet.tasks.corrector import CorrectorCollateFn

N_UNITS = 20
# Grouped-query attention, so that k and v differ from q and o in shape.
TINY_LLAMA = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128
)
LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
EXAMPLES = [
    ([3, 1, 4, 1, 5, 9, 2, 6], "THE CAT SAT ON THE MAP", "THE CAT SAT ON THE MAT"),
    ([2, 7, 1, 8], "A DOG RAN", "A DOG RAN IN THE PARK"),
]


def lora_parameter_count(rank: int, hidden: int, kv_dim: int, layers: int) -> int:
    """r * (in + out) for each of q, k, v, o in every block."""
    q_and_o = 2 * rank * (hidden + hidden)
    k_and_v = 2 * rank * (hidden + kv_dim)
    return layers * (q_and_o + k_and_v)


def trainable(model: torch.nn.Module) -> dict:
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


@pytest.fixture(scope="module")
def text_tokenizer():
    return train_sentencepiece_tokenizer([text for _, pt, ct in EXAMPLES for text in (pt, ct)])


@pytest.fixture(scope="module")
def tokenizer(text_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    text_tokenizer.save_pretrained(str(path))
    tokenizer = load_tokenizer(path)
    add_unit_tokens(tokenizer, N_UNITS)
    return tokenizer


def save_tiny_llama(path, vocab_size: int) -> str:
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, **TINY_LLAMA)).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def pretrained_dir(tokenizer, tmp_path_factory):
    """A 'SpeechGPT': its vocabulary already holds the unit tokens."""
    return save_tiny_llama(tmp_path_factory.mktemp("speechgpt"), len(tokenizer))


@pytest.fixture(scope="module")
def text_only_dir(text_tokenizer, tmp_path_factory):
    """A plain text LM, which lacks the unit tokens."""
    return save_tiny_llama(tmp_path_factory.mktemp("llama"), len(text_tokenizer))


@pytest.fixture(scope="module")
def batch(tokenizer):
    encoded = [encode_prompt(tokenizer, *example) for example in EXAMPLES]
    data = [
        (f"utt{i}", {"input_ids": np.asarray(e.input_ids), "labels": np.asarray(e.labels)})
        for i, e in enumerate(encoded)
    ]
    _, batch = CorrectorCollateFn(tokenizer.eos_token_id)(data)
    assert batch["input_ids_lengths"][0] != batch["input_ids_lengths"][1]  # padding is exercised
    return batch


def test_unit_tokens_extend_once_and_keep_their_ids(text_tokenizer, tmp_path):
    tokenizer = load_tokenizer(_saved(text_tokenizer, tmp_path / "text"))
    text_size = len(tokenizer)
    assert add_unit_tokens(tokenizer, N_UNITS) == N_UNITS + 4
    assert add_unit_tokens(tokenizer, N_UNITS) == 0
    ids = tokenizer.convert_tokens_to_ids(corrector_tokens(N_UNITS))
    assert ids == list(range(text_size, text_size + N_UNITS + 4))

    reloaded = load_tokenizer(_saved(tokenizer, tmp_path / "units"))
    assert reloaded.convert_tokens_to_ids(corrector_tokens(N_UNITS)) == ids
    assert len(reloaded) == len(tokenizer) and count_unit_tokens(reloaded) == N_UNITS
    assert reloaded.tokenize(f"<3><17>{EOA}") == ["<3>", "<17>", EOA]


def test_tokenizer_that_has_the_units_only_gains_the_missing_markers(text_tokenizer, tmp_path):
    tokenizer = load_tokenizer(_saved(text_tokenizer, tmp_path / "text"))
    tokenizer.add_tokens(corrector_tokens(N_UNITS)[:-2])  # like SpeechGPT: units, <sosp>, <eosp>
    assert add_unit_tokens(tokenizer, N_UNITS) == 2


def test_embeddings_grow_to_the_tokenizer(tokenizer, text_only_dir):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=text_only_dir, use_lora=False)
    assert corrector.lm.get_input_embeddings().num_embeddings == len(tokenizer)
    assert corrector.lm.get_output_embeddings().out_features == len(tokenizer)


def test_lora_trains_the_analytic_parameter_count(tokenizer, pretrained_dir):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=pretrained_dir)
    expected = lora_parameter_count(rank=8, hidden=64, kv_dim=64 // 4 * 2, layers=2)
    assert sum(p.numel() for p in trainable(corrector).values()) == expected
    assert all("lora_" in name for name in trainable(corrector))


def test_paper_lora_has_8m_trainable_parameters():
    """§4.2: LoRA r = 8 on q, k, v, o of LLaMA-7B (SpeechGPT's 33k vocabulary), built on the meta device."""
    with torch.device("meta"):
        corrector = AudioLMCorrector(vocab_size=33004, lm_config=LLAMA_7B)
    count = sum(p.numel() for p in trainable(corrector).values())
    assert count == lora_parameter_count(rank=8, hidden=4096, kv_dim=4096, layers=32) == 8_388_608


def test_rows_of_tokens_new_to_the_lm_train_with_the_adapters(tokenizer, text_tokenizer, text_only_dir):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=text_only_dir)
    n_new = len(tokenizer) - len(text_tokenizer)
    lora = lora_parameter_count(rank=8, hidden=64, kv_dim=32, layers=2)
    # Input and (untied) output rows of the new tokens, 64 values each.
    assert sum(p.numel() for p in trainable(corrector).values()) == lora + 2 * n_new * 64


def test_forward_backward_with_lora(tokenizer, pretrained_dir, batch):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=pretrained_dir)
    loss, stats, weight = corrector(**batch)
    assert torch.isfinite(loss) and int(weight) == 2
    assert {"loss_asr", "loss_ger", "acc", "acc_asr", "acc_ger"} <= set(stats)
    assert math.isclose(float(stats["loss"]), float(stats["loss_asr"] + stats["loss_ger"]), rel_tol=1e-6)
    # A random LM over V tokens: each part is near log V.
    assert 0.5 * math.log(len(tokenizer)) < float(stats["loss_asr"]) < 2 * math.log(len(tokenizer))
    loss.backward()
    for name, param in corrector.named_parameters():
        if param.requires_grad:
            assert "lora_" in name and param.grad is not None and torch.isfinite(param.grad).all()
        else:
            assert param.grad is None, name


def test_forward_backward_from_scratch_trains_everything(tokenizer, batch):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_config=TINY_LLAMA, use_lora=False)
    loss, stats, _ = corrector(**batch)
    loss.backward()
    assert all(param.requires_grad and param.grad is not None for param in corrector.parameters())
    assert torch.isfinite(stats["loss_ger"])


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tokenizer, pretrained_dir, batch):
    losses, grads = [], []
    for checkpointing in (False, True):
        corrector = AudioLMCorrector(
            vocab_size=len(tokenizer), lm_name_or_path=pretrained_dir, lora_dropout=0.0,
            gradient_checkpointing=checkpointing,
        )
        torch.manual_seed(1)
        for param in trainable(corrector).values():  # LoRA B starts at zero: give it a gradient path
            param.data.normal_(std=0.02)
        loss, _, _ = corrector.train()(**batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([param.grad.flatten() for param in trainable(corrector).values()]))
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_checkpoints_hold_only_trained_weights_and_reload(tokenizer, pretrained_dir, batch):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=pretrained_dir).eval()
    with torch.no_grad():
        for param in trainable(corrector).values():
            param.normal_(std=0.05)
    state = corrector.state_dict()
    assert set(state) == {f"{name}" for name in trainable(corrector)}

    rebuilt = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=pretrained_dir).eval()
    rebuilt.load_state_dict(state)  # strict: the frozen weights are the pretrained ones
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(**batch)[0], corrector(**batch)[0])


def test_adapter_export_and_merge_give_the_same_lm(tokenizer, text_only_dir, batch, tmp_path):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=text_only_dir).eval()
    with torch.no_grad():
        for param in trainable(corrector).values():
            param.normal_(std=0.05)
        reference = corrector.lm(input_ids=batch["input_ids"]).logits

    corrector.save_adapter(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(text_only_dir)
    base.resize_token_embeddings(len(tokenizer))
    from_adapter = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()

    corrector.save_merged(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    with torch.no_grad():
        for lm in (from_adapter, corrector.lm, merged):
            logits = lm(input_ids=batch["input_ids"]).logits
            torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)
    assert not corrector.use_lora and isinstance(corrector.lm, LlamaForCausalLM)


def test_lm_generates_from_the_step_one_prefix(tokenizer, pretrained_dir):
    corrector = AudioLMCorrector(vocab_size=len(tokenizer), lm_name_or_path=pretrained_dir).eval()
    prefix = torch.tensor([encode_prompt(tokenizer, EXAMPLES[0][0]).input_ids])
    eoa = tokenizer.convert_tokens_to_ids(EOA)
    out = corrector.lm.generate(
        input_ids=prefix, attention_mask=torch.ones_like(prefix), max_new_tokens=4, do_sample=False,
        eos_token_id=eoa, pad_token_id=tokenizer.eos_token_id,
    )
    assert out.shape[1] > prefix.shape[1] and torch.equal(out[0, : prefix.shape[1]], prefix[0])


def test_exactly_one_lm_source():
    with pytest.raises(ValueError, match="exactly one"):
        AudioLMCorrector(vocab_size=10)


def _saved(tokenizer, path):
    tokenizer.save_pretrained(str(path))
    return path
