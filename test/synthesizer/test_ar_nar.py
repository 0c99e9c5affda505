"""AR+NAR synthesizer (eq. 7) on tiny tensors, and the sampling / guidance helpers it uses."""
import math

import pytest
import torch

from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer, prefix_lm_mask
from sepalm_espnet.synthesizer.layers import (
    PAD_ID,
    SynthesisOptions,
    cfg_logits,
    filter_top_k_top_p,
    lengths_to_mask,
    null_condition,
)

NUM_CODEBOOKS, CODEBOOK_SIZE, PHONEME_VOCAB = 3, 16, 12


def tiny_model(**overrides) -> ArNarSynthesizer:
    torch.manual_seed(0)
    conf = dict(
        phoneme_vocab_size=PHONEME_VOCAB, num_codebooks=NUM_CODEBOOKS, codebook_size=CODEBOOK_SIZE,
        d_model=32, nhead=4, num_layers=2, dim_feedforward=64, dropout=0.0,
    )
    return ArNarSynthesizer(**{**conf, **overrides})


@pytest.fixture
def batch(padded):
    torch.manual_seed(1)
    est, est_lengths = padded([9, 6, 4], 9, CODEBOOK_SIZE, (NUM_CODEBOOKS,))
    ref, ref_lengths = padded([8, 6, 5], 8, CODEBOOK_SIZE, (NUM_CODEBOOKS,))
    phonemes, phoneme_lengths = padded([5, 0, 3], 5, PHONEME_VOCAB)  # one empty transcript
    return dict(
        est_tokens=est, est_tokens_lengths=est_lengths, ref_tokens=ref, ref_tokens_lengths=ref_lengths,
        phonemes=phonemes, phonemes_lengths=phoneme_lengths,
    )


def inference_inputs(batch):
    return {name: batch[name] for name in ("est_tokens", "est_tokens_lengths", "phonemes", "phonemes_lengths")}


def test_forward_backward_gives_finite_loss_and_gradients(batch):
    model = tiny_model()
    loss, stats, weight = model(**batch)
    loss.backward()
    assert torch.isfinite(loss) and int(weight) == 3
    assert set(stats) == {"loss", "ar_loss", "ar_acc", "nar_loss", "nar_acc"}
    assert torch.allclose(stats["loss"], stats["ar_loss"] + stats["nar_loss"])
    grads = [p.grad for p in model.parameters()]  # every parameter, for DDP without unused-parameter search
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    head_grads = model.nar.heads.weight.grad.flatten(1).abs().sum(dim=1)
    assert int((head_grads > 0).sum()) == 1  # one random codebook 2..Q per batch


def test_padding_does_not_change_the_loss(batch):
    """Extra padding frames (any value) are masked out of attention and loss."""
    model = tiny_model().eval()
    torch.manual_seed(5)
    loss, _, _ = model(**batch)
    wider = dict(batch)
    for name in ("est_tokens", "ref_tokens"):
        wider[name] = torch.cat([batch[name], torch.full_like(batch[name][:, :3], PAD_ID)], dim=1)
    torch.manual_seed(5)  # the same NAR codebook
    wider_loss, _, _ = model(**wider)
    assert torch.allclose(loss, wider_loss, atol=1e-5)


def test_dropped_condition_ignores_the_phonemes(batch):
    model = tiny_model(cond_drop_prob=1.0).train()
    other = dict(batch, phonemes=(batch["phonemes"] + 3) % PHONEME_VOCAB)
    losses = []
    for inputs in (batch, other):
        torch.manual_seed(3)
        losses.append(model(**inputs)[0])
    assert torch.allclose(losses[0], losses[1])
    model.eval()  # no dropping at evaluation: the phonemes count
    torch.manual_seed(3)
    assert not torch.allclose(model(**batch)[0], model(**other)[0])


def test_null_condition_replaces_dropped_and_empty_sequences():
    ids = torch.tensor([[4, 5, 6], [7, PAD_ID, PAD_ID], [PAD_ID, PAD_ID, PAD_ID]])
    new_ids, lengths = null_condition(ids, torch.tensor([3, 1, 0]), torch.tensor([True, False, False]), null_id=99)
    assert new_ids[:, 0].tolist() == [99, 7, 99] and lengths.tolist() == [1, 1, 1]


def test_prefix_lm_mask_structure():
    mask = prefix_lm_mask(torch.tensor([[True, True, False]]), torch.tensor([[True, True]]))[0, 0]
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],  # prefix rows: the valid prefix only
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 0, 1, 0],  # target rows: prefix + causal target
            [1, 1, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_cached_steps_equal_full_recomputation(batch):
    model = tiny_model().eval()
    ar = model.ar
    no_drop = torch.zeros(3, dtype=torch.bool)
    phonemes, phoneme_lengths = null_condition(batch["phonemes"], batch["phonemes_lengths"], no_drop, PHONEME_VOCAB)
    prefix, prefix_valid = ar.embed_prefix(phonemes, phoneme_lengths, batch["est_tokens"][..., 0], batch["est_tokens_lengths"])
    targets = torch.cat([torch.full((3, 1), ar.start_id), torch.randint(0, CODEBOOK_SIZE, (3, 5))], dim=1)
    with torch.no_grad():
        full = ar.full_logits(prefix, prefix_valid, ar.embed_targets(targets), torch.ones_like(targets, dtype=torch.bool))
        caches = ar.prefill(prefix, prefix_valid)
        for position in range(targets.size(1)):
            step_logits, caches = ar.step(ar.embed_targets(targets[:, position : position + 1], position), prefix_valid, caches)
            assert torch.allclose(step_logits, full[:, position], atol=1e-5)


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_with_cache_equals_generation_without(batch, cfg_scale, temperature):
    model = tiny_model().eval()
    outputs = []
    for use_cache in (True, False):
        options = SynthesisOptions(temperature=temperature, top_k=8, top_p=0.9, guidance_scale=cfg_scale,
                                   use_cache=use_cache, seed=7)
        outputs.append(model.generate(**inference_inputs(batch), options=options))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


def test_generation_stops_at_the_end_token_or_the_length_cap(batch):
    model = tiny_model().eval()
    inputs = inference_inputs(batch)
    with torch.no_grad():
        model.ar.head.bias[model.ar.end_id] = 1e4  # end as early as allowed: after one frame
    tokens, lengths = model.generate(**inputs, options=SynthesisOptions(temperature=0.0))
    assert lengths.tolist() == [1, 1, 1] and tokens.shape == (3, 1, NUM_CODEBOOKS)
    with torch.no_grad():
        model.ar.head.bias[model.ar.end_id] = -1e4  # never ends: capped at ceil(ratio * T')
    capped = SynthesisOptions(temperature=1.0, max_length_ratio=1.25)
    tokens, lengths = model.generate(**inputs, options=capped)
    assert lengths.tolist() == [math.ceil(1.25 * n) for n in (9, 6, 4)]
    valid = lengths_to_mask(lengths, tokens.size(1))
    assert tokens.shape == (3, 12, NUM_CODEBOOKS)
    assert ((tokens[valid] >= 0) & (tokens[valid] < CODEBOOK_SIZE)).all() and (tokens[~valid] == PAD_ID).all()


def test_exact_length_policy_writes_t_prime_frames_whatever_the_end_token_says(batch):
    model = tiny_model().eval()
    inputs = inference_inputs(batch)
    for bias in (1e4, -1e4):  # an AR that would stop at once, and one that would never stop
        with torch.no_grad():
            model.ar.head.bias[model.ar.end_id] = bias
        for use_cache in (True, False):
            options = SynthesisOptions(temperature=0.0, length_policy="exact", max_length_ratio=9.0, use_cache=use_cache)
            tokens, lengths = model.generate(**inputs, options=options)
            assert lengths.tolist() == inputs["est_tokens_lengths"].tolist() == [9, 6, 4]
            assert tokens.shape == (3, 9, NUM_CODEBOOKS)
    with pytest.raises(ValueError, match="length_policy 'longest': choose from"):
        SynthesisOptions(length_policy="longest")


def test_tokens_of_another_codec_are_refused(batch):
    with pytest.raises(ValueError, match=r"\(B, T, 3\)"):
        tiny_model()(**dict(batch, ref_tokens=batch["ref_tokens"][..., :2]))
    with pytest.raises(ValueError, match="outside the codebook of 16"):
        tiny_model()(**dict(batch, est_tokens=batch["est_tokens"] + CODEBOOK_SIZE))


def test_cfg_combination_formula():
    cond, uncond = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(cfg_logits(cond, uncond, 1.0), cond)
    assert torch.equal(cfg_logits(cond, uncond, 0.0), uncond)
    assert torch.equal(cfg_logits(cond, uncond, 3.0), torch.tensor([4.0, -5.0]))  # uncond + 3 (cond - uncond)


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda filtered: torch.isfinite(filtered[0]).tolist()
    assert kept(filter_top_k_top_p(logits, top_k=2)) == [True, True, False, False]
    assert kept(filter_top_k_top_p(logits, top_p=0.7)) == [True, True, False, False]
    assert kept(filter_top_k_top_p(logits, top_p=0.1)) == [True, False, False, False]
    assert kept(filter_top_k_top_p(logits, top_k=0, top_p=1.0)) == [True] * 4
