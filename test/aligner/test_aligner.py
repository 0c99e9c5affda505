"""STFTAligner and AlignerModel on tiny tensors: identity at init, gradients, lags, padding."""
import numpy as np
import pytest
import torch

from sepalm_espnet.aligner.model import AlignerModel, STFTAligner
from sepalm_espnet.metrics.separation import si_snr as numpy_si_snr

FS = 16000


def signals(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, generator=torch.Generator().manual_seed(seed))


def randomize_output(aligner: STFTAligner) -> STFTAligner:
    """Non-identity weights, so the tests see the CNN at work rather than α = [1, 0]."""
    torch.manual_seed(1)
    torch.nn.init.normal_(aligner.output_projection.weight, std=0.1)
    torch.nn.init.normal_(aligner.output_projection.bias, std=0.1)
    return aligner


def test_identity_weights_return_estimate():
    aligner = STFTAligner()
    speech_est, speech_syn = signals(2, 4001), signals(2, 4001, seed=1)
    spec_est, spec_syn = aligner.stft(speech_est), aligner.stft(speech_syn)
    combined = aligner.combine(spec_est, spec_syn, torch.ones_like(spec_est), torch.zeros_like(spec_syn))
    lengths = torch.tensor([4001, 4001])
    torch.testing.assert_close(aligner.istft(combined, lengths, 4001), speech_est, atol=1e-5, rtol=0)


def test_untrained_aligner_returns_estimate():
    aligner = STFTAligner(max_lag_ms=5.0)
    speech_est, speech_syn = signals(3, 3000), signals(3, 3000, seed=1)
    with torch.no_grad():
        aligned = aligner(speech_est, speech_syn)
    torch.testing.assert_close(aligned, speech_est, atol=1e-5, rtol=0)


def test_parameter_count_matches_paper():
    count = sum(p.numel() for p in STFTAligner().parameters())
    assert count == 130_989 and 100_000 <= count <= 160_000


def test_gradients_reach_every_cnn_parameter():
    model = AlignerModel(STFTAligner())
    reference = signals(2, 3000)
    speech_est = reference + 0.5 * signals(2, 3000, seed=1)
    speech_syn = reference + 0.5 * signals(2, 3000, seed=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def backward():
        optimizer.zero_grad()
        loss, _, _ = model(speech_est, speech_syn, reference)
        loss.backward()
        return {name: param.grad for name, param in model.named_parameters()}

    # From the zero-initialised output projection, the first step updates only that projection.
    grads = backward()
    assert all(grads[name].abs().sum() > 0 for name in grads if name.startswith("aligner.output_projection"))
    optimizer.step()
    grads = backward()
    assert grads and all(grad is not None and grad.abs().sum() > 0 for grad in grads.values())


@pytest.mark.parametrize("lag", [37, -37])
def test_coarse_alignment_recovers_integer_lag(lag):
    aligner = STFTAligner(max_lag_ms=5.0, fs=FS)  # ±80 samples
    length = 4000
    speech_est = signals(1, length)
    speech_syn = torch.roll(speech_est, lag, dims=1)  # s*[t] = ŝ[t - lag]
    aligned, lags = aligner.coarse_align(speech_est, speech_syn, torch.tensor([length]))
    assert lags.tolist() == [lag]
    overlap = slice(0, length - lag) if lag > 0 else slice(-lag, length)
    torch.testing.assert_close(aligned[:, overlap], speech_est[:, overlap])
    outside = slice(length - lag, length) if lag > 0 else slice(0, -lag)
    assert torch.all(aligned[:, outside] == 0)


def test_padded_batch_matches_items_alone():
    aligner = randomize_output(STFTAligner(max_lag_ms=5.0, fs=FS))
    lengths = [4000, 2903, 1500]
    speech_est, speech_syn = signals(3, 4000), signals(3, 4000, seed=1)
    with torch.no_grad():
        batch = aligner(speech_est, speech_syn, torch.tensor(lengths))
        for i, length in enumerate(lengths):
            alone = aligner(speech_est[i : i + 1, :length], speech_syn[i : i + 1, :length])
            assert not torch.allclose(alone[0], speech_est[i, :length], atol=1e-3)
            torch.testing.assert_close(batch[i, :length], alone[0], atol=1e-5, rtol=1e-4)
            assert torch.all(batch[i, length:] == 0)


def test_training_and_inference_layouts_give_the_same_output():
    """Without autograd the CNN runs channels-last, with it contiguous: the numbers agree."""
    aligner = randomize_output(STFTAligner())
    speech_est, speech_syn = signals(2, 3000), signals(2, 3000, seed=1)
    lengths = torch.tensor([3000, 2100])
    with torch.no_grad():
        inferred = aligner(speech_est, speech_syn, lengths)
    trained = aligner(speech_est, speech_syn, lengths)
    assert trained.requires_grad and not torch.allclose(inferred, speech_est, atol=1e-3)
    torch.testing.assert_close(trained.detach(), inferred, atol=1e-5, rtol=1e-4)


def padded_batch(lengths, total_length: int, seed: int = 0):
    """(ŝ, s*, s) of the given lengths, padded with garbage (not zeros) past each item's end."""
    reference = signals(len(lengths), total_length, seed)
    speech_est = reference + 0.5 * signals(len(lengths), total_length, seed + 1)
    speech_syn = reference + 0.8 * signals(len(lengths), total_length, seed + 2)
    return speech_est, speech_syn, reference, torch.tensor(lengths)


def test_padded_batch_loss_and_gradient_are_the_mean_over_examples_alone():
    torch.manual_seed(0)
    model = AlignerModel(randomize_output(STFTAligner(max_lag_ms=5.0, fs=FS)))
    lengths = [4000, 2903, 1500]
    speech_est, speech_syn, reference, lengths_tensor = padded_batch(lengths, 4000)

    def loss_and_grads(*batch):
        model.zero_grad()
        loss, stats, _ = model(*batch)
        loss.backward()
        return loss.detach(), stats, [p.grad.clone() for p in model.parameters()]

    loss, stats, grads = loss_and_grads(speech_est, speech_syn, reference, lengths_tensor, lengths_tensor,
                                        lengths_tensor)
    alone = [
        loss_and_grads(speech_est[i : i + 1, :n], speech_syn[i : i + 1, :n], reference[i : i + 1, :n])
        for i, n in enumerate(lengths)
    ]
    expected_loss = torch.stack([item_loss for item_loss, _, _ in alone]).mean()
    assert abs(loss.item() - expected_loss.item()) < 1e-5, (loss.item(), expected_loss.item())
    assert abs(loss.item() + stats["si_snr"].item()) < 1e-5
    for name in ("si_snr_est", "si_snr_syn"):
        expected = torch.stack([item_stats[name] for _, item_stats, _ in alone]).mean()
        assert abs(stats[name].item() - expected.item()) < 1e-5, name
    for index, grad in enumerate(grads):
        expected = torch.stack([item_grads[index] for _, _, item_grads in alone]).mean(dim=0)
        torch.testing.assert_close(grad, expected, atol=1e-5, rtol=1e-4)
    assert any(grad.abs().sum() > 0 for grad in grads)


def test_padding_content_changes_neither_loss_nor_gradient():
    model = AlignerModel(randomize_output(STFTAligner()))
    lengths = [3000, 2100]
    garbage = padded_batch(lengths, 3000)
    zeros = [signal * (torch.arange(3000) < torch.tensor(lengths)[:, None]) for signal in garbage[:3]]
    results = []
    for batch in (garbage, (*zeros, garbage[3])):
        model.zero_grad()
        loss, _, _ = model(*batch[:3], batch[3], batch[3], batch[3])
        loss.backward()
        assert torch.isfinite(loss)
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss_garbage, grads_garbage), (loss_zeros, grads_zeros) = results
    assert loss_garbage.item() == pytest.approx(loss_zeros.item(), abs=1e-6)
    for grad_garbage, grad_zeros in zip(grads_garbage, grads_zeros):
        assert torch.isfinite(grad_garbage).all()
        torch.testing.assert_close(grad_garbage, grad_zeros, atol=1e-6, rtol=1e-5)


def test_forward_requires_fitted_synthesized_speech():
    with pytest.raises(ValueError, match="fit s"):
        STFTAligner()(signals(1, 1000), signals(1, 1100))


def test_model_si_snr_counts_only_each_items_samples():
    model = AlignerModel(STFTAligner())
    reference = signals(2, 3000)
    estimate = reference + 0.3 * signals(2, 3000, seed=1)
    lengths = torch.tensor([3000, 1800])
    padded_reference = reference * (torch.arange(3000) < lengths[:, None])
    measured = model.si_snr(padded_reference, estimate, lengths)
    expected = [
        numpy_si_snr(reference[i, :n].numpy(), estimate[i, :n].numpy()) for i, n in enumerate(lengths.tolist())
    ]
    np.testing.assert_allclose(measured.numpy(), expected, atol=1e-3)


def test_model_reports_loss_and_si_snr_of_each_input():
    model = AlignerModel(STFTAligner())
    reference = signals(2, 3000)
    speech_est = reference + 0.3 * signals(2, 3000, seed=1)
    speech_syn = reference + 1.0 * signals(2, 3000, seed=2)
    lengths = torch.tensor([3000, 2000])
    loss, stats, weight = model(speech_est, speech_syn, reference, lengths, lengths, lengths)
    assert weight.item() == 2
    assert set(stats) == {"loss", "si_snr", "si_snr_est", "si_snr_syn"}
    # The untrained aligner returns ŝ, so s̃ scores exactly as ŝ does.
    torch.testing.assert_close(stats["si_snr"], stats["si_snr_est"], atol=1e-3, rtol=0)
    torch.testing.assert_close(loss.detach(), -stats["si_snr"])
    assert stats["si_snr_syn"].item() < stats["si_snr_est"].item()
    with pytest.raises(ValueError, match="speech_ref lengths"):
        model(speech_est, speech_syn, reference, lengths, lengths, torch.tensor([3000, 3000]))
