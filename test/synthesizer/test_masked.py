"""Masked synthesizer (eq. 8) on tiny tensors: schedule, training loss, iterative decoding."""
import math

import pytest
import torch

from sepalm_espnet.synthesizer.layers import PAD_ID, SynthesisOptions, cosine_schedule, lengths_to_mask
from sepalm_espnet.synthesizer.masked import (
    MaskedSynthesizer,
    PhonemeCrossAttentionBackbone,
    SemanticSumBackbone,
    stretch_to_length,
)

NUM_CODEBOOKS, CODEBOOK_SIZE, PHONEME_VOCAB, SEMANTIC_VOCAB = 3, 16, 12, 20
LENGTHS = [9, 6, 4]


def tiny_model(condition="semantic", **overrides) -> MaskedSynthesizer:
    torch.manual_seed(0)
    conf = dict(
        num_codebooks=NUM_CODEBOOKS, codebook_size=CODEBOOK_SIZE, d_model=32, nhead=4, num_layers=2,
        dim_feedforward=64, dropout=0.0, condition=condition, semantic_vocab_size=SEMANTIC_VOCAB,
        phoneme_vocab_size=PHONEME_VOCAB, phoneme_encoder_layers=1, inference_steps=[5, 3, 1],
    )
    return MaskedSynthesizer(**{**conf, **overrides})


@pytest.fixture
def batch(padded):
    torch.manual_seed(1)
    est, lengths = padded(LENGTHS, 9, CODEBOOK_SIZE, (NUM_CODEBOOKS,))
    ref, _ = padded(LENGTHS, 9, CODEBOOK_SIZE, (NUM_CODEBOOKS,))
    phonemes, phoneme_lengths = padded([5, 2, 3], 5, PHONEME_VOCAB)
    semantic, semantic_lengths = padded([12, 7, 0], 12, SEMANTIC_VOCAB)  # one empty condition
    return dict(
        est_tokens=est, est_tokens_lengths=lengths, ref_tokens=ref, ref_tokens_lengths=lengths.clone(),
        phonemes=phonemes, phonemes_lengths=phoneme_lengths, semantic=semantic, semantic_lengths=semantic_lengths,
    )


def inference_inputs(batch):
    return {name: value for name, value in batch.items() if not name.startswith("ref_")}


def test_cosine_schedule_values():
    values = cosine_schedule(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert values[0] == 1.0 and values[2] == 0.0
    assert math.isclose(float(values[1]), math.cos(math.pi / 4), rel_tol=1e-12)
    assert (cosine_schedule(torch.linspace(0, 1, 50)).diff() <= 0).all()


def test_stretch_to_length_is_nearest_neighbour():
    ids = torch.tensor([[1, 2, 3, 0], [5, 6, 7, 8]])
    stretched = stretch_to_length(ids, torch.tensor([3, 4]), torch.tensor([6, 2]), num_frames=6)
    assert stretched[0].tolist() == [1, 1, 2, 2, 3, 3] and stretched[1, :2].tolist() == [5, 7]


@pytest.mark.parametrize("condition", ["semantic", "phoneme"])
def test_forward_backward_gives_finite_loss_and_gradients(batch, condition):
    model = tiny_model(condition)
    loss, stats, weight = model(**batch)
    loss.backward()
    assert torch.isfinite(loss) and int(weight) == 3 and set(stats) == {"loss", "acc", "masked_fraction"}
    assert 0 < float(stats["masked_fraction"]) <= 1
    grads = [p.grad for p in model.parameters()]  # every parameter, for DDP without unused-parameter search
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_condition_switch_picks_the_backbone_and_its_data(batch):
    semantic_model, phoneme_model = tiny_model("semantic").eval(), tiny_model("phoneme").eval()
    assert isinstance(semantic_model.backbone, SemanticSumBackbone)
    assert isinstance(phoneme_model.backbone, PhonemeCrossAttentionBackbone)
    assert any(isinstance(m, torch.nn.MultiheadAttention) and "multihead_attn" in name
               for name, m in phoneme_model.backbone.named_modules())  # cross-attention layers

    def loss_with(model, **changes):
        torch.manual_seed(4)  # the same codebook and mask
        return model(**dict(batch, **changes))[0]

    other_phonemes = (batch["phonemes"] + 3) % PHONEME_VOCAB
    other_semantic = (batch["semantic"] + 3) % SEMANTIC_VOCAB
    assert not torch.allclose(loss_with(phoneme_model), loss_with(phoneme_model, phonemes=other_phonemes))
    assert torch.allclose(loss_with(phoneme_model), loss_with(phoneme_model, semantic=other_semantic))
    assert not torch.allclose(loss_with(semantic_model), loss_with(semantic_model, semantic=other_semantic))
    assert torch.allclose(loss_with(semantic_model), loss_with(semantic_model, phonemes=other_phonemes))
    with pytest.raises(ValueError, match="'phonemes' data"):
        phoneme_model(**dict(batch, phonemes=None, phonemes_lengths=None))


def test_dropped_condition_ignores_it(batch):
    model = tiny_model("phoneme", cond_drop_prob=1.0).train()
    losses = []
    for phonemes in (batch["phonemes"], (batch["phonemes"] + 3) % PHONEME_VOCAB):
        torch.manual_seed(3)
        losses.append(model(**dict(batch, phonemes=phonemes))[0])
    assert torch.allclose(losses[0], losses[1])


def test_training_needs_equal_est_and_ref_lengths(batch):
    with pytest.raises(ValueError, match="same number of frames"):
        tiny_model()(**dict(batch, ref_tokens_lengths=batch["ref_tokens_lengths"] - 1))


@pytest.mark.parametrize("condition", ["semantic", "phoneme"])
def test_decoding_unmasks_monotonically_in_exactly_the_configured_rounds(batch, condition):
    model = tiny_model(condition).eval()
    lengths = torch.tensor(LENGTHS)
    rounds = {codebook: [] for codebook in range(NUM_CODEBOOKS)}
    previous_masked = previous_tokens = None
    options = SynthesisOptions(temperature=1.0, top_k=8, guidance_scale=2.0)
    for state in model.decoding_steps(**inference_inputs(batch), options=options):
        if state.step == 1:
            previous_masked = lengths_to_mask(lengths, 9)  # every real frame starts masked
            previous_tokens = torch.full_like(state.tokens, model.mask_id)
        rounds[state.codebook].append(state.masked.sum(dim=1).tolist())
        assert not (state.masked & ~previous_masked).any()  # nothing is masked again
        decided = ~previous_masked & lengths_to_mask(lengths, 9)
        assert torch.equal(state.tokens[decided], previous_tokens[decided])  # decided tokens stay
        assert (state.tokens[state.masked] == model.mask_id).all()
        previous_masked, previous_tokens = state.masked, state.tokens
    steps = {0: 5, 1: 3, 2: 1}  # inference_steps [5, 3, 1]; the last entry covers later codebooks
    for codebook, counts in rounds.items():
        n = steps[codebook]
        assert counts == [[math.floor(t * math.cos(math.pi / 2 * k / n) + 1e-9) for t in LENGTHS] for k in range(1, n + 1)]
        assert counts[-1] == [0, 0, 0]


def test_generate_returns_every_codebook_of_every_frame(batch):
    model = tiny_model().eval()
    greedy = SynthesisOptions(steps=[4, 2], temperature=0.0)
    tokens, lengths = model.generate(**inference_inputs(batch), options=greedy)
    assert tokens.shape == (3, 9, NUM_CODEBOOKS) and lengths.tolist() == LENGTHS
    valid = lengths_to_mask(lengths, 9)
    assert ((tokens[valid] >= 0) & (tokens[valid] < CODEBOOK_SIZE)).all() and (tokens[~valid] == PAD_ID).all()
    again, _ = model.generate(**inference_inputs(batch), options=greedy)
    assert torch.equal(tokens, again)  # greedy is deterministic


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError, match="condition must be one of"):
        tiny_model("text")
    with pytest.raises(ValueError, match="semantic_vocab_size"):
        tiny_model("semantic", semantic_vocab_size=None)
    with pytest.raises(ValueError, match="inference_steps"):
        tiny_model(inference_steps=[5, 0])
