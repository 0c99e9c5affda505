"""SLM-SS model on tiny tensors: training loss (PIT over the speaker order), the cached and
batched decoding, the length cap, input checks and the paper configuration's size."""
import logging
import math
from typing import List

import pytest
import torch

from sepalm_espnet.slm_ss.model import (
    CachedCrossAttentionDecoderLayer,
    SlmSsDecodeOptions,
    SlmSsModel,
    causal_mask,
)
from sepalm_espnet.synthesizer.layers import PAD_ID, lengths_to_mask

Q, V = 3, 16  # codebooks x codes
SAMPLES = [3200, 2900, 2000]  # 10, 10 and 7 encoder / codec frames of 320 samples
FRAMES = [math.ceil(n / 320) for n in SAMPLES]


def tiny_model(**overrides) -> SlmSsModel:
    torch.manual_seed(0)
    conf = dict(
        encoder_conf=dict(output_dim=32, n_mels=20, num_layers=1), num_codebooks=Q, codebook_size=V, d_model=32,
        nhead=4, num_encoder_layers=1, num_decoder_layers=2, num_nar_layers=1, dim_feedforward=64, dropout=0.0,
    )
    return SlmSsModel(**{**conf, **overrides})


def padded_tokens(lengths: List[int], width: int, codebooks: int = Q) -> torch.Tensor:
    tokens = torch.randint(0, V, (len(lengths), width, codebooks))
    return tokens.masked_fill(~lengths_to_mask(torch.tensor(lengths), width)[..., None], PAD_ID)


@pytest.fixture
def batch():
    torch.manual_seed(1)
    speech = 0.1 * torch.randn(3, max(SAMPLES))
    speech = speech * lengths_to_mask(torch.tensor(SAMPLES), speech.size(1))
    return dict(
        speech_mix=speech, speech_mix_lengths=torch.tensor(SAMPLES),
        ref_tokens1=padded_tokens([6, 4, 5], 6), ref_tokens1_lengths=torch.tensor([6, 4, 5]),
        ref_tokens2=padded_tokens([5, 7, 2], 7), ref_tokens2_lengths=torch.tensor([5, 7, 2]),
    )


def mixtures(batch):
    return batch["speech_mix"], batch["speech_mix_lengths"]


def losses(model, batch, seed=5):
    torch.manual_seed(seed)  # the same random NAR codebook
    loss, stats, _ = model(**batch)
    return loss, stats


def test_forward_backward_gives_finite_loss_and_gradients(batch):
    model = tiny_model()
    loss, stats, weight = model(**batch, utt_id=["a", "b", "c"])
    loss.backward()
    assert torch.isfinite(loss) and int(weight) == 3
    assert set(stats) == {"loss", "ar_loss", "ar_acc", "nar_loss", "nar_acc"}
    assert torch.allclose(stats["loss"], stats["ar_loss"] + stats["nar_loss"])
    # every parameter gets a gradient: DDP needs no unused-parameter search
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    head_grads = model.nar.heads.weight.grad.flatten(1).abs().sum(dim=1)
    assert int((head_grads > 0).sum()) == 1  # one random codebook 1..Q-1 per batch
    assert model.collect_feats(**batch) == {}
    assert model.num_spk == 2 and model.sample_rate == 16000


def test_padding_and_extra_codebooks_do_not_change_the_loss(batch):
    """Wider padding (samples and token frames) is masked out; codebooks past num_codebooks are
    ignored, as a codec giving more codebooks than the model uses."""
    model = tiny_model().eval()
    loss, _ = losses(model, batch)
    wider = dict(batch, speech_mix=torch.cat([batch["speech_mix"], torch.ones(3, 700)], dim=1))
    for name in ("ref_tokens1", "ref_tokens2"):
        tokens = batch[name]
        wider[name] = torch.cat([tokens, torch.full_like(tokens[:, :3], PAD_ID)], dim=1)
    assert torch.allclose(loss, losses(model, wider)[0], atol=1e-5)
    more = dict(batch)
    for name in ("ref_tokens1", "ref_tokens2"):
        more[name] = torch.cat([batch[name], torch.randint(0, V, batch[name].shape)], dim=2)
    assert torch.equal(loss, losses(model, more)[0])


def test_serialization_of_two_speakers():
    model = tiny_model()
    ar = model.ar
    sc, eos, sos = ar.sc_id, ar.eos_id, ar.sos_id
    first = torch.tensor([[1, 2, 3], [4, PAD_ID, PAD_ID]])
    second = torch.tensor([[5, 6], [7, 8]])
    sequences = ar.serialize(first, torch.tensor([3, 1]), second, torch.tensor([2, 2]))
    assert sequences.targets.tolist() == [[1, 2, 3, sc, 5, 6, eos], [4, sc, 7, 8, eos, -100, -100]]
    assert sequences.inputs[:, :5].tolist() == [[sos, 1, 2, 3, sc], [sos, 4, sc, 7, 8]]
    assert sequences.segments.tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]]
    # input i predicts frame positions[i] of its speaker (or the <sc> / <eos> after its last frame)
    assert sequences.positions.tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 0, 1, 2, 3, 4]]


def test_pit_trains_the_lower_loss_order_and_given_the_first(batch):
    model = tiny_model().eval()
    with torch.no_grad():
        memory, valid = model.encode(*mixtures(batch))
        order_losses, _, _ = model.ar_order_losses(
            memory, valid, batch["ref_tokens1"][..., 0], batch["ref_tokens1_lengths"],
            batch["ref_tokens2"][..., 0], batch["ref_tokens2_lengths"],
        )
    assert order_losses.shape == (3, 2)
    assert not torch.allclose(order_losses[:, 0], order_losses[:, 1])  # the two orders differ
    _, stats = losses(model, batch)
    assert torch.allclose(stats["ar_loss"], order_losses.min(dim=1).values.mean(), atol=1e-6)
    given = tiny_model(speaker_order="given").eval()
    _, given_stats = losses(given, batch)
    assert torch.allclose(given_stats["ar_loss"], order_losses[:, 0].mean(), atol=1e-6)
    # PIT is blind to which speaker is called spk1 (the NAR loss covers both speakers anyway)
    swapped = dict(batch, ref_tokens1=batch["ref_tokens2"], ref_tokens1_lengths=batch["ref_tokens2_lengths"],
                   ref_tokens2=batch["ref_tokens1"], ref_tokens2_lengths=batch["ref_tokens1_lengths"])
    assert torch.allclose(losses(model, swapped)[1]["ar_loss"], stats["ar_loss"], atol=1e-6)
    assert not torch.allclose(losses(given, swapped)[1]["ar_loss"], given_stats["ar_loss"])


def test_cached_cross_attention_steps_equal_the_full_pass():
    torch.manual_seed(0)
    layer = CachedCrossAttentionDecoderLayer(32, 4, 64, dropout=0.0).eval()
    x, memory = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    memory_mask = lengths_to_mask(torch.tensor([9, 4]))[:, None, None, :]
    memory_kv = layer.memory_keys_values(memory)
    with torch.no_grad():
        full, _ = layer(x, causal_mask(6, x.device), memory_kv, memory_mask)
        cache = None
        for t in range(6):
            mask = causal_mask(1, x.device, cached=t)
            assert torch.equal(mask, causal_mask(t + 1, x.device)[:, :, t:])  # the full mask's last row
            step, cache = layer(x[:, t : t + 1], mask, memory_kv, memory_mask, cache)
            assert torch.allclose(step[:, 0], full[:, t], atol=1e-5)


def outputs_equal(a, b) -> bool:
    return len(a) == len(b) and all(
        x.status == y.status and len(x.tokens) == len(y.tokens) == 2
        and all(torch.equal(s, t) for s, t in zip(x.tokens, y.tokens))
        for x, y in zip(a, b)
    )


def ending_model() -> SlmSsModel:
    """Untrained, but <sc> and <eos> likely enough that sampled decodings end at varied lengths."""
    model = tiny_model().eval()
    with torch.no_grad():
        model.ar.head.bias[model.ar.sc_id] += 2.5
        model.ar.head.bias[model.ar.eos_id] += 2.5
    return model


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_with_cache_equals_generation_without(batch, temperature):
    model = ending_model()
    outputs = [
        model.generate(*mixtures(batch), FRAMES, SlmSsDecodeOptions(temperature=temperature, top_k=8, top_p=0.9,
                                                                    use_cache=use_cache, seed=7))
        for use_cache in (True, False)
    ]
    assert outputs_equal(*outputs)
    if temperature:  # sampled: rows end at different steps, so the batch runs on past finished rows
        lengths = {(len(o.tokens[0]), len(o.tokens[1])) for o in outputs[0]}
        assert len(lengths) > 1, lengths


@pytest.mark.parametrize("bias", [None, 2.5])
def test_a_batch_decodes_as_each_mixture_alone(batch, bias):
    """Greedy: padding of the memory and rows finished earlier do not change a row."""
    model = tiny_model().eval() if bias is None else ending_model()
    speech, lengths = mixtures(batch)
    batched = model.generate(speech, lengths, FRAMES)
    alone = [model.generate(speech[b : b + 1, : SAMPLES[b]], lengths[b : b + 1], FRAMES[b : b + 1])[0]
             for b in range(3)]
    assert outputs_equal(batched, alone)
    for output in batched:
        assert all(t.dtype == torch.int64 and t.ndim == 2 and t.size(1) == Q for t in output.tokens)
        assert all(((t >= 0) & (t < V)).all() for t in output.tokens)


def test_decoding_steps_give_forward_s_teacher_forced_logits(batch):
    """Every AR step's logits equal forward()'s for the decoded sequence (speaker order given,
    dropout 0): training and decoding see the same positions, segments and masks."""
    model = ending_model()
    model.speaker_order = "given"
    recorded = []
    handle = model.ar.head.register_forward_hook(lambda _m, _i, output: recorded.append(output.clone()))
    outputs = model.generate(*mixtures(batch), FRAMES, SlmSsDecodeOptions(temperature=1.0, seed=3))
    steps = [logits[:, -1] for logits in recorded]
    ok = [b for b, o in enumerate(outputs) if o.status == "ok"]
    assert len(ok) >= 2, [o.status for o in outputs]
    recorded.clear()
    rows = torch.tensor(ok)
    as_reference = lambda k: torch.nn.utils.rnn.pad_sequence([outputs[b].tokens[k] for b in ok], True, PAD_ID)
    with torch.no_grad():
        model.train()(batch["speech_mix"][rows], batch["speech_mix_lengths"][rows],
                      as_reference(0), torch.tensor([len(outputs[b].tokens[0]) for b in ok]),
                      as_reference(1), torch.tensor([len(outputs[b].tokens[1]) for b in ok]))
    handle.remove()
    teacher_forced = recorded[0]
    for row, b in enumerate(ok):
        total = len(outputs[b].tokens[0]) + len(outputs[b].tokens[1]) + 2
        difference = max(float((steps[t][b] - teacher_forced[row, t]).abs().max()) for t in range(total))
        assert difference < 1e-4, f"mixture {b}: max |step - teacher-forced| logit {difference:.2e}"


def test_length_cap_gives_two_speakers_a_capped_status_and_a_warning(batch, caplog):
    speech, lengths = mixtures(batch)
    options = SlmSsDecodeOptions(max_length_ratio=0.5)
    caps = [math.ceil(0.5 * n) for n in FRAMES]
    with caplog.at_level(logging.WARNING, logger="sepalm_espnet.slm_ss.model"):
        untrained = tiny_model().eval().generate(speech, lengths, FRAMES, options)
    assert all(len(o.tokens) == 2 and o.status in ("capped_no_sc", "capped_no_eos") for o in untrained)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3

    model = tiny_model().eval()
    with torch.no_grad():
        model.ar.head.bias[model.ar.sc_id] = -1e4  # never switches speakers: <sc> forced at the cap ...
        model.ar.head.bias[model.ar.eos_id] = -1e4  # ... and never ends: speaker 2 capped too
    for output, cap in zip(model.generate(speech, lengths, FRAMES, options), caps):
        assert output.status == "capped_no_sc"
        assert [len(t) for t in output.tokens] == [cap, cap] and output.tokens[1].shape == (cap, Q)
    with torch.no_grad():
        model.ar.head.bias[model.ar.eos_id] = 2e4  # forced <sc>, then speaker 2 ends after one frame
    for output, cap in zip(model.generate(speech, lengths, FRAMES, options), caps):
        assert output.status == "capped_no_sc" and [len(t) for t in output.tokens] == [cap, 1]
    with torch.no_grad():
        model.ar.head.bias[model.ar.sc_id] = 1e4  # switches as soon as allowed (after one frame) ...
        model.ar.head.bias[model.ar.eos_id] = -1e4  # ... and never ends
    for output, cap in zip(model.generate(speech, lengths, FRAMES, options), caps):
        assert output.status == "capped_no_eos" and [len(t) for t in output.tokens] == [1, cap]
    with torch.no_grad():
        model.ar.head.bias[model.ar.eos_id] = 2e4  # <sc> and <eos> as early as allowed: one frame each
    for output in model.generate(speech, lengths, FRAMES, options):
        assert output.status == "ok" and [len(t) for t in output.tokens] == [1, 1]


def test_inputs_of_another_codec_or_options_are_refused(batch):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"ref_tokens2: expected \(B, T, Qc >= 3\)"):
        model(**dict(batch, ref_tokens2=batch["ref_tokens2"][..., :2]))
    with pytest.raises(ValueError, match="ref_tokens1: token .* outside the codebook of 16"):
        model(**dict(batch, ref_tokens1=batch["ref_tokens1"] + V))
    with pytest.raises(ValueError, match="ref_tokens1: negative"):
        model(**dict(batch, ref_tokens1_lengths=torch.tensor([6, 5, 5])))
    with pytest.raises(ValueError, match="num_frames has 2 entries for 3 mixtures"):
        model.generate(*mixtures(batch), FRAMES[:2])
    with pytest.raises(ValueError, match="unknown speaker_order 'random'"):
        tiny_model(speaker_order="random")


PAPER = dict(encoder="conv", encoder_conf=dict(output_dim=1024), num_codebooks=8, codebook_size=1024, d_model=1024,
             nhead=16, num_encoder_layers=4, num_decoder_layers=16, num_nar_layers=12, dim_feedforward=4096)


def test_paper_configuration_size():
    """Whisper-medium-sized decoder (d 1024, 16 heads, 16 layers, ffn 4096), 12 NAR layers, 8 x 1024
    EnCodec codes; a conv encoder of WavLM-large's width (1024) stands for WavLM (~315M more).
    Built on the meta device: nothing is allocated."""
    with torch.device("meta"):
        model = SlmSsModel(**PAPER)
    count = lambda module: sum(p.numel() for p in module.parameters())
    d, ffn = 1024, 4096
    layer = 4 * d * d + 4 * d + 2 * d * ffn + d + ffn + 4 * d  # attention, feed-forward, 2 norms
    cross_layer = layer + 4 * d * d + 4 * d + 2 * d  # + cross-attention and its norm
    assert count(model.memory_encoder) == 4 * layer + 2 * d
    assert count(model.ar) == 16 * cross_layer + (1024 + 3) * d + 2 * d + 2 * d + (1024 + 2) * (d + 1)
    total, parts = count(model), {name: count(module) for name, module in model.named_children()}
    print(f"SLM-SS paper configuration: {total / 1e6:.1f}M parameters "
          f"({', '.join(f'{name} {n / 1e6:.1f}M' for name, n in parts.items())})")
    # stated ranges: AR 265-275M, NAR 160-170M, all but the mixture encoder 480-495M
    assert 265e6 < parts["ar"] < 275e6 and 160e6 < parts["nar"] < 170e6
    assert 480e6 < total - parts["encoder"] < 495e6
