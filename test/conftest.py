"""Fixtures shared by the test folders (pytest reads this conftest for every test below it)."""
import numpy as np
import pytest
import torch


def voiced_sound(num_samples: int, seed: int, fs: int = 16000) -> np.ndarray:
    """A speech-like voiced sound: a wobbling f0 with 3 formants, syllable-rate amplitude.

    Learnability tests need audio with speech's structure (harmonics, formants, syllables)
    that no download can give them."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / fs
    f0 = 100 + 120 * rng.random() + 20 * np.sin(2 * np.pi * (2 + 3 * rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    formants = 300 + 2500 * rng.random(3)
    wave = np.zeros(num_samples)
    for k in range(1, 30):
        gain = sum(np.exp(-(((k * f0) - f) / 150) ** 2) for f in formants) + 0.05
        wave += gain / np.sqrt(k) * np.sin(k * phase) * (k * f0 < fs / 2 - 500)
    wave *= 0.5 - 0.5 * np.cos(2 * np.pi * (3 + 2 * rng.random()) * t)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="session")
def voiced():
    """voiced(num_samples, seed, fs=16000) -> float32 speech-like sound."""
    return voiced_sound


@pytest.fixture
def one_torch_thread():
    """Training tests on one thread: the same figures on every machine, and no oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
