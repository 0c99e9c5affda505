"""WavLMMixtureEncoder on a tiny random WavLM (the wavlm-large layout: layer-norm convs, stable
layer norm) saved with save_pretrained: frames, padding, layers, freezing, safe loading."""
import shutil

import pytest
import torch
from torch import nn
from transformers import EncodecConfig, EncodecModel, Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

from sepalm_espnet.slm_ss.wavlm_encoder import WavLMEncoderError, WavLMMixtureEncoder

# Two conv layers: hop 10 samples, receptive field 20 (wavlm-large: 320 and 400).
TINY_WAVLM = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    feat_extract_norm="layer", do_stable_layer_norm=True,
)
RECEPTIVE_FIELD = 20


@pytest.fixture(scope="module")
def wavlm_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("wavlm") / "tiny"
    WavLMModel(WavLMConfig(**TINY_WAVLM)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(wavlm_dir):
    """The same checkpoint loaded by transformers alone, all layers."""
    return WavLMModel.from_pretrained(wavlm_dir).eval()


def noise(*shape, seed=0):
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def conv_frames(num_samples):
    return ((num_samples - 10) // 5 + 1 - 3) // 2 + 1


def test_features_and_frame_lengths_follow_wavlms_conv_grid(wavlm_dir):
    encoder = WavLMMixtureEncoder(str(wavlm_dir))
    lengths = torch.tensor([1600, 1000, 15])  # the last is shorter than one receptive field
    features, frame_lengths = encoder(noise(3, 1600), lengths)
    assert encoder.output_dim == 32 and features.shape == (3, conv_frames(1600), 32)
    assert frame_lengths.tolist() == [conv_frames(1600), conv_frames(1000), 1]
    padded_to_one_frame = lengths.clamp_min(RECEPTIVE_FIELD)
    assert torch.equal(frame_lengths, encoder.wavlm._get_feat_extract_output_lengths(padded_to_one_frame))
    assert features[1, frame_lengths[1]:].abs().sum() == 0 and features[1, : frame_lengths[1]].abs().sum() > 0
    short, short_lengths = encoder(noise(1, 15), torch.tensor([15]))
    assert short.shape == (1, 1, 32) and short_lengths.tolist() == [1]


@pytest.mark.parametrize("normalize", [False, True])
def test_padding_after_a_mixture_does_not_change_its_features(wavlm_dir, normalize):
    encoder = WavLMMixtureEncoder(str(wavlm_dir), normalize=normalize)
    batch = noise(2, 1600, seed=1)
    batch[1, 1000:] = 0.3  # whatever follows a length must not matter
    features, frame_lengths = encoder(batch, torch.tensor([1600, 1000]))
    alone, alone_lengths = encoder(batch[1:, :1000], torch.tensor([1000]))
    assert alone_lengths[0] == frame_lengths[1]
    torch.testing.assert_close(features[1, : frame_lengths[1]], alone[0], atol=1e-5, rtol=1e-4)


def test_normalisation_defaults_to_the_saved_preprocessor(wavlm_dir, tmp_path):
    assert not WavLMMixtureEncoder(str(wavlm_dir)).normalize  # no preprocessor_config.json
    with_preprocessor = tmp_path / "wavlm"
    shutil.copytree(wavlm_dir, with_preprocessor)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(with_preprocessor)
    encoder = WavLMMixtureEncoder(str(with_preprocessor))
    assert encoder.normalize
    wav = noise(1, 800, seed=2)
    scaled, _ = encoder(7.0 * wav + 0.05, torch.tensor([800]))
    torch.testing.assert_close(scaled, encoder(wav, torch.tensor([800]))[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_k_is_hidden_state_k_and_later_layers_are_dropped(wavlm_dir, reference, layer):
    encoder = WavLMMixtureEncoder(str(wavlm_dir), layer=layer)
    wav = noise(1, 1200, seed=3)
    features, _ = encoder(wav, torch.tensor([1200]))
    with torch.no_grad():
        expected = reference(wav, attention_mask=torch.ones_like(wav, dtype=torch.long),
                             output_hidden_states=True).hidden_states[layer]
    torch.testing.assert_close(features, expected)
    assert len(encoder.wavlm.encoder.layers) == max(layer, 1)
    assert any(key.startswith("wavlm.encoder.layers.1.") for key in encoder.state_dict()) == (layer == 2)


def test_frozen_wavlm_gets_no_gradient_while_the_layer_weights_learn(wavlm_dir, reference):
    torch.manual_seed(0)
    parent = nn.ModuleDict({"encoder": WavLMMixtureEncoder(str(wavlm_dir)), "head": nn.Linear(32, 4)})
    encoder = parent["encoder"]
    before = {key: value.clone() for key, value in encoder.wavlm.state_dict().items()}
    parent.train()
    assert parent.training and not encoder.wavlm.training
    trainable = [name for name, parameter in parent.named_parameters() if parameter.requires_grad]
    assert trainable == ["encoder.layer_weights", "head.weight", "head.bias"]
    wav = noise(2, 1200, seed=4)
    with torch.no_grad():
        target = reference(wav, attention_mask=torch.ones_like(wav, dtype=torch.long),
                           output_hidden_states=True).hidden_states[1]
    optimizer = torch.optim.Adam([parameter for parameter in parent.parameters() if parameter.requires_grad], lr=0.1)
    losses = []
    for _ in range(30):
        features, _ = encoder(wav, torch.tensor([1200, 1200]))
        loss = (features - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(parameter.grad is None for parameter in encoder.wavlm.parameters())
    assert all(torch.equal(before[key], value) for key, value in encoder.wavlm.state_dict().items())
    weights = torch.softmax(encoder.layer_weights.detach(), dim=0)
    assert losses[-1] < 0.2 * losses[0] and weights[1] > 0.8, (losses[0], losses[-1], weights)


def test_unfrozen_wavlm_is_fine_tuned_and_the_parent_state_dict_holds_it(wavlm_dir):
    torch.manual_seed(0)
    parent = nn.ModuleDict({"encoder": WavLMMixtureEncoder(str(wavlm_dir), layer=2, freeze=False)})
    parent.train()
    encoder = parent["encoder"]
    assert encoder.wavlm.training
    features, _ = encoder(noise(2, 1200, seed=5), torch.tensor([1200, 900]))
    features.square().mean().backward()
    grads = [parameter.grad for parameter in encoder.wavlm.encoder.layers[1].parameters()]
    assert all(grad is not None for grad in grads) and sum(grad.abs().sum() for grad in grads) > 0
    state = parent.state_dict()
    assert "encoder.wavlm.feature_projection.projection.weight" in state
    fresh = nn.ModuleDict({"encoder": WavLMMixtureEncoder(str(wavlm_dir), layer=2, freeze=False)})
    with torch.no_grad():
        state = {key: value + 0.01 for key, value in state.items()}  # as if trained
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh["encoder"].wavlm.encoder.layers[0].feed_forward.output_dense.weight,
                               state["encoder.wavlm.encoder.layers.0.feed_forward.output_dense.weight"])


def test_unusable_sources_and_options_are_refused(wavlm_dir, tmp_path):
    with pytest.raises(WavLMEncoderError, match="absent: no such model directory"):
        WavLMMixtureEncoder(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WavLMEncoderError, match="empty: no transformers model there"):
        WavLMMixtureEncoder(str(tmp_path / "empty"))
    torch.manual_seed(0)
    EncodecModel(EncodecConfig(hidden_size=8, num_filters=2, num_lstm_layers=1, codebook_size=16)).save_pretrained(
        tmp_path / "encodec")
    with pytest.raises(WavLMEncoderError, match="'encodec' model, expected 'wavlm'"):
        WavLMMixtureEncoder(str(tmp_path / "encodec"))
    with pytest.raises(WavLMEncoderError, match=r"layer 3 out of range 0\.\.2"):
        WavLMMixtureEncoder(str(wavlm_dir), layer=3)
    with pytest.raises(WavLMEncoderError, match="not 8000 Hz"):
        WavLMMixtureEncoder(str(wavlm_dir), sample_rate=8000)
    partial = tmp_path / "partial"
    model = WavLMModel.from_pretrained(wavlm_dir)
    state = {key: value for key, value in model.state_dict().items() if ".layers.1." not in key}
    model.save_pretrained(partial, state_dict=state)
    with pytest.raises(WavLMEncoderError, match="weights missing"):
        WavLMMixtureEncoder(str(partial))


class OpensAFile:
    """Unpickling this calls open(path, "w"): code a checkpoint should never get to run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_pytorch_model_bin_loads_only_through_weights_only(wavlm_dir, tmp_path):
    model = WavLMModel.from_pretrained(wavlm_dir)
    plain = tmp_path / "plain"
    model.config.save_pretrained(plain)
    torch.save(model.state_dict(), plain / "pytorch_model.bin")
    wav = noise(1, 800, seed=6)
    torch.testing.assert_close(WavLMMixtureEncoder(str(plain), layer=2)(wav, torch.tensor([800]))[0],
                               WavLMMixtureEncoder(str(wavlm_dir), layer=2)(wav, torch.tensor([800]))[0])
    unsafe = tmp_path / "unsafe"
    model.config.save_pretrained(unsafe)
    marker = tmp_path / "code_ran"
    torch.save({**model.state_dict(), "payload": OpensAFile(marker)}, unsafe / "pytorch_model.bin")
    with pytest.raises(WavLMEncoderError, match="unsafe: weights not loadable as WavLMModel .*UnpicklingError"):
        WavLMMixtureEncoder(str(unsafe))
    assert not marker.exists()


def test_a_hub_id_is_read_from_the_local_cache_offline(wavlm_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--user--tiny-wavlm"
    shutil.copytree(wavlm_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    wav = noise(1, 800, seed=7)
    torch.testing.assert_close(WavLMMixtureEncoder("user/tiny-wavlm", layer=1)(wav, torch.tensor([800]))[0],
                               WavLMMixtureEncoder(str(wavlm_dir), layer=1)(wav, torch.tensor([800]))[0])
    with pytest.raises(WavLMEncoderError, match="user/absent: no such directory, .* in the local hub cache"):
        WavLMMixtureEncoder("user/absent")
