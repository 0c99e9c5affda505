import pytest
import torch

from sepalm_espnet.synthesizer.layers import PAD_ID, lengths_to_mask


@pytest.fixture
def padded():
    """make(lengths, width, high, extra_dims=()): random ids in [0, high) with PAD_ID after
    each length, as ESPnet's collate pads token sequences."""

    def make(lengths, width, high, extra_dims=()):
        tokens = torch.randint(0, high, (len(lengths), width, *extra_dims))
        valid = lengths_to_mask(torch.tensor(lengths), width)
        mask = valid.view(*valid.shape, *[1] * len(extra_dims))
        return tokens.masked_fill(~mask, PAD_ID), torch.tensor(lengths)

    return make
