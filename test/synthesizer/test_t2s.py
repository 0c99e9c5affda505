"""Text-to-semantic model: teacher-forced loss, greedy decoding that stops at the end token."""
import pytest
import torch

from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID
from sepalm_espnet.synthesizer.t2s import units_of_text_file
from sepalm_espnet.synthesizer.t2s_model import T2SDecodeOptions, TextToSemantic

PHONEMES = {"a": "h ə l oʊ", "b": "t ɛ s t | m iː"}
UNITS = {"a": [3, 1, 4, 1, 5], "b": [9, 2, 6]}
TINY = dict(unit_vocab_size=10, d_model=32, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
            dim_feedforward=64, dropout=0.0)


def batch(token_list, keys):
    pad = lambda seqs: torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=PAD_ID)
    phonemes = [torch.tensor(token_list.encode(PHONEMES[key])) for key in keys]
    units = [torch.tensor(UNITS[key]) for key in keys]
    return (pad(phonemes), torch.tensor([len(p) for p in phonemes]), pad(units), torch.tensor([len(u) for u in units]))


@pytest.fixture(scope="module")
def trained():
    """A tiny model overfitted to the two utterances."""
    torch.manual_seed(0)
    token_list = TokenList.build(PHONEMES.values())
    model = TextToSemantic(len(token_list), **TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    inputs = batch(token_list, ["a", "b"])
    for _ in range(80):
        loss, stats, _ = model(*inputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), token_list, stats


def test_teacher_forcing_learns_the_units(trained):
    _, _, stats = trained
    assert float(stats["acc"]) == 1.0 and float(stats["loss"]) < 0.1


def test_greedy_decoding_stops_at_the_end_token(trained):
    model, token_list, _ = trained
    phonemes, phoneme_lengths, _, _ = batch(token_list, ["a", "b"])
    units, lengths = model.generate(phonemes, phoneme_lengths)
    assert lengths.tolist() == [5, 3]
    assert units[0].tolist() == UNITS["a"] and units[1].tolist() == UNITS["b"] + [PAD_ID] * 2
    capped, capped_lengths = model.generate(phonemes, phoneme_lengths, max_length=2)
    assert capped_lengths.tolist() == [2, 2] and capped.tolist() == [[3, 1], [9, 2]]


def test_units_file_and_errors(trained, tmp_path):
    model, token_list, _ = trained
    (tmp_path / "phonemes").write_text("".join(f"{k} {v}\n" for k, v in PHONEMES.items()) + "c\n")
    (tmp_path / "keys").write_text("b\na\n")
    units_of_text_file(model, token_list, tmp_path / "phonemes", tmp_path / "units", key_file=tmp_path / "keys")
    assert read_kv(tmp_path / "units") == {"a": "3 1 4 1 5", "b": "9 2 6"}
    with pytest.raises(DataDirError, match="'c' has no phonemes"):
        units_of_text_file(model, token_list, tmp_path / "phonemes", tmp_path / "all")
    with pytest.raises(ValueError, match="outside"):
        model(*batch(token_list, ["a"])[:2], torch.tensor([[10]]), torch.tensor([1]))


def test_decode_options_batch_and_cap_the_units_file(trained, tmp_path):
    model, token_list, _ = trained
    (tmp_path / "phonemes").write_text("".join(f"{k} {v}\n" for k, v in PHONEMES.items()))
    one_by_one = units_of_text_file(model, token_list, tmp_path / "phonemes", tmp_path / "units",
                                    options=T2SDecodeOptions(batch_size=1))
    assert one_by_one == {"a": UNITS["a"], "b": UNITS["b"]}
    capped = units_of_text_file(model, token_list, tmp_path / "phonemes", tmp_path / "capped",
                                options=T2SDecodeOptions(max_length=2))
    assert capped == {"a": UNITS["a"][:2], "b": UNITS["b"][:2]}
    with pytest.raises(ValueError, match="must be positive"):
        T2SDecodeOptions(batch_size=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_cached_decoding_equals_recomputing_every_step(seed):
    """An untrained model (no early end: every step runs) on a batch with padded phonemes."""
    torch.manual_seed(seed)
    token_list = TokenList.build(PHONEMES.values())
    model = TextToSemantic(len(token_list), **{**TINY, "num_decoder_layers": 2}).eval()
    phonemes, phoneme_lengths, _, _ = batch(token_list, ["a", "b"])
    cached = model.generate(phonemes, phoneme_lengths, max_length=30, use_cache=True)
    recomputed = model.generate(phonemes, phoneme_lengths, max_length=30, use_cache=False)
    assert torch.equal(cached[0], recomputed[0]) and torch.equal(cached[1], recomputed[1])
    # Step by step, the logits of the cached step are those of the full pass at that position.
    memory, padding = model.encode(phonemes, phoneme_lengths)
    inputs = torch.cat([torch.full((2, 1), model.start_id), cached[0].clamp(min=0)], dim=1)
    with torch.no_grad():
        full = model.decode(inputs, None, memory, padding)
        memory_kv, cache = model.memory_cache(memory), None
        for position in range(inputs.size(1)):
            step, cache = model.decode_step(inputs[:, position], position, memory_kv, padding, cache)
            torch.testing.assert_close(step, full[:, position], atol=1e-5, rtol=1e-5)


def test_trained_model_decodes_the_same_with_and_without_the_cache(trained):
    model, token_list, _ = trained
    phonemes, phoneme_lengths, _, _ = batch(token_list, ["a", "b"])
    for use_cache in (True, False):
        units, lengths = model.generate(phonemes, phoneme_lengths, use_cache=use_cache)
        assert lengths.tolist() == [5, 3] and units[0].tolist() == UNITS["a"]
