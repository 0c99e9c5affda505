"""Shared by the corrector tests."""
import pytest
import torch

from sepalm_espnet.corrector.tokenizer import add_unit_tokens, save_tokenizer, train_sentencepiece_tokenizer


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: extra threads on a shared machine cost more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_tokenizer_dir(tmp_path_factory):
    """make(texts, n_units) -> a saved SentencePiece tokenizer of the texts plus n_units unit tokens."""

    def make(texts, n_units):
        tokenizer = train_sentencepiece_tokenizer(list(texts))
        add_unit_tokens(tokenizer, n_units)
        path = tmp_path_factory.mktemp("tokenizer") / "tokenizer"
        save_tokenizer(tokenizer, path)
        return path

    return make
