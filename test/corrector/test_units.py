"""Speech units: feature extractors (tiny random HuBERT, log-mel), k-means, unit files, CLIs."""
import shutil

import joblib
import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from sklearn.cluster import MiniBatchKMeans
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from sepalm_espnet.bin.extract_units import main as extract_units_main
from sepalm_espnet.bin.fit_kmeans import main as fit_kmeans_main
from sepalm_espnet.corrector.units import (
    HubertFeatureExtractor,
    KMeansQuantizer,
    LogMelFeatureExtractor,
    build_feature_extractor,
    fit_kmeans,
    import_sklearn_kmeans,
    load_kmeans,
    merge_repeats,
    read_units,
    save_kmeans,
    units_from_features,
    units_to_prompt_string,
)
from sepalm_espnet.data.kaldi_dir import DataDirError

FS = 16000
HALF_SECOND = 8000
FRAMES_OF_HALF_SECOND = (HALF_SECOND - 400) // 320 + 1  # 24 frames of 25 ms every 20 ms


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    """A random 2-layer HuBERT with the real convolutional frontend shape (hop 320, window 400)."""
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    directory = tmp_path_factory.mktemp("tiny_hubert")
    HubertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def speech():
    rng = np.random.default_rng(0)
    t = np.arange(HALF_SECOND) / FS
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(HALF_SECOND)).astype(np.float32)


def test_hubert_features_are_the_chosen_layer_of_the_saved_model(hubert_dir, speech):
    extractor = HubertFeatureExtractor(str(hubert_dir), layer=1)
    model = HubertModel.from_pretrained(hubert_dir).eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(speech)[None], output_hidden_states=True).hidden_states[1][0]

    features = extractor.extract(speech)
    assert features.dtype == np.float32 and features.shape == (FRAMES_OF_HALF_SECOND, 32)
    np.testing.assert_allclose(features, expected.numpy(), atol=1e-5)
    assert extractor.frame_rate == 50
    assert extractor.normalize is False  # no saved preprocessor: raw waveform, as HuBERT base
    assert not np.allclose(HubertFeatureExtractor(str(hubert_dir), layer=2).extract(speech), features)
    with pytest.raises(ValueError, match="layer 3 out of range"):
        HubertFeatureExtractor(str(hubert_dir), layer=3)


def test_chunks_follow_the_frame_grid(hubert_dir, speech):
    whole = HubertFeatureExtractor(str(hubert_dir), layer=2)
    chunked = HubertFeatureExtractor(str(hubert_dir), layer=2, chunk_seconds=0.25)  # 2 chunks of 12 frames

    features = chunked.extract(speech)
    assert features.shape == whole.extract(speech).shape
    # Chunk 1 ends with frame 11's 400-sample window; chunk 2 starts at frame 12 (sample 12 * 320).
    np.testing.assert_allclose(features[:12], whole.extract(speech[:11 * 320 + 400]), atol=1e-5)
    np.testing.assert_allclose(features[12:], whole.extract(speech[12 * 320:]), atol=1e-5)
    assert whole.extract(speech[:100]).shape == (1, 32)  # shorter than one window: still one frame


def test_normalisation_follows_the_saved_preprocessor(hubert_dir, speech, tmp_path):
    normalising_dir = tmp_path / "hubert_normalised"
    shutil.copytree(hubert_dir, normalising_dir)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(normalising_dir)

    extractor = HubertFeatureExtractor(str(normalising_dir), layer=1)
    assert extractor.normalize is True and extractor.config["normalize"] is True
    standardised = (speech - speech.mean()) / np.sqrt(speech.var() + 1e-7)
    raw = HubertFeatureExtractor(str(hubert_dir), layer=1)
    np.testing.assert_allclose(extractor.extract(3 * speech), raw.extract(standardised), atol=1e-4)


def test_half_precision_weights_run_in_float32(hubert_dir, speech, tmp_path):
    HubertModel.from_pretrained(hubert_dir).half().save_pretrained(tmp_path / "hubert_fp16")
    features = HubertFeatureExtractor(str(tmp_path / "hubert_fp16"), layer=2).extract(speech)
    reference = HubertFeatureExtractor(str(hubert_dir), layer=2).extract(speech)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, reference, atol=0.05)


def test_logmel_is_librosa_log_mel_on_the_hubert_grid(speech):
    extractor = build_feature_extractor("logmel", {})
    features = extractor.extract(speech)
    assert extractor.frame_rate == 50
    assert features.dtype == np.float32 and features.shape == (FRAMES_OF_HALF_SECOND, 80)
    mel = librosa.feature.melspectrogram(y=speech, sr=FS, n_fft=400, hop_length=320, center=False, n_mels=80)
    np.testing.assert_allclose(features, np.log(np.maximum(mel, 1e-10)).T, atol=1e-3)
    assert extractor.extract(np.zeros(FS, np.float32) + 0.1).shape[0] == (FS - 400) // 320 + 1
    assert LogMelFeatureExtractor(n_mels=40).extract(speech[:100]).shape == (1, 40)


def blobs(n_per_cluster=100, n_clusters=8, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    means = 5 * rng.standard_normal((n_clusters, dim))
    return (means[:, None] + rng.standard_normal((n_clusters, n_per_cluster, dim))).reshape(-1, dim).astype(np.float32)


def test_fit_kmeans_is_sklearn_and_quantizer_matches_its_predict():
    data = blobs()
    quantizer = fit_kmeans(np.array_split(data, 5), n_clusters=8, seed=3, max_frames=10_000, batch_size=256)
    reference = MiniBatchKMeans(n_clusters=8, batch_size=256, random_state=3).fit(data)
    np.testing.assert_allclose(quantizer.centers, reference.cluster_centers_, rtol=1e-6)
    noisy = data + np.random.default_rng(1).standard_normal(data.shape).astype(np.float32)
    np.testing.assert_array_equal(KMeansQuantizer(quantizer.centers, batch_frames=37)(noisy), reference.predict(noisy))


def test_fit_kmeans_reads_only_max_frames():
    blocks_read = []

    def blocks():
        for block in np.array_split(blobs(), 8):  # 100 frames each
            blocks_read.append(len(block))
            yield block

    fit_kmeans(blocks(), n_clusters=4, max_frames=250)
    assert blocks_read == [100, 100, 100]
    with pytest.raises(ValueError, match="3 feature frames cannot make 4 clusters"):
        fit_kmeans([blobs()[:3]], n_clusters=4)


def test_save_load_round_trip_is_pickle_free(tmp_path):
    quantizer = KMeansQuantizer(blobs()[:5])
    save_kmeans(tmp_path / "km", quantizer, "hubert", {"model": "mhubert", "layer": 11})

    np.testing.assert_array_equal(np.load(tmp_path / "km/centers.npy", allow_pickle=False), quantizer.centers)
    description = yaml.safe_load((tmp_path / "km/kmeans.yaml").read_text())
    assert description == {"n_clusters": 5, "feature_dim": 6, "feature_type": "hubert",
                           "feature_conf": {"model": "mhubert", "layer": 11}}
    loaded, feature_type, feature_conf = load_kmeans(tmp_path / "km")
    np.testing.assert_array_equal(loaded.centers, quantizer.centers)
    assert (feature_type, feature_conf) == ("hubert", {"model": "mhubert", "layer": 11})

    np.save(tmp_path / "km/centers.npy", quantizer.centers[:4])
    with pytest.raises(DataDirError, match=r"shape \(4, 6\) but .*kmeans.yaml says \(5, 6\)"):
        load_kmeans(tmp_path / "km")


def test_sklearn_model_import(tmp_path):
    reference = MiniBatchKMeans(n_clusters=4, random_state=0, n_init=1).fit(blobs())
    joblib.dump(reference, tmp_path / "km.bin")
    imported = import_sklearn_kmeans(tmp_path / "km.bin")
    np.testing.assert_array_equal(imported.centers, reference.cluster_centers_)
    features = blobs(seed=3)  # frames the k-means never saw: our unit ids are SpeechGPT's predict()
    np.testing.assert_array_equal(imported(features), reference.predict(features))


def test_units_merge_runs_and_format_as_speechgpt_prompt():
    assert merge_repeats([3, 3, 1, 1, 1, 3, 0, 0]) == [3, 1, 3, 0]
    assert merge_repeats([]) == []
    centers = np.array([[0.0], [10.0]])
    features = np.array([[0.1], [0.2], [9.0], [8.0], [1.0], [11.0]])
    assert units_from_features(features, KMeansQuantizer(centers)) == [0, 1, 0, 1]
    assert units_from_features(features, KMeansQuantizer(centers), dedup=False) == [0, 0, 1, 1, 0, 1]
    assert units_to_prompt_string([12, 45, 7]) == "<sosp><12><45><7><eosp>"


def test_read_units_names_a_bad_line(tmp_path):
    (tmp_path / "units").write_text("a 1 2 3\nb 4 x\n")
    with pytest.raises(DataDirError, match=r"units:2: key 'b'"):
        read_units(tmp_path / "units")


def write_scp(directory):
    """An unsorted wav.scp: noise, a sine, and a stereo 8 kHz file (downmixed and resampled)."""
    rng = np.random.default_rng(0)
    t = np.arange(HALF_SECOND) / FS
    audio = {"utt_c": (0.1 * rng.standard_normal(HALF_SECOND), FS),
             "utt_a": (0.5 * np.sin(2 * np.pi * 300 * t), FS),
             "utt_b": (0.2 * rng.standard_normal((HALF_SECOND // 2, 2)), FS // 2)}
    lines = []
    for key, (data, fs) in audio.items():
        sf.write(directory / f"{key}.wav", data, fs)
        lines.append(f"{key} {directory / key}.wav\n")
    (directory / "wav.scp").write_text("".join(lines))
    return directory / "wav.scp"


@pytest.mark.parametrize("feature_type", ["logmel", "hubert"])
def test_fit_then_extract_clis(tmp_path, hubert_dir, feature_type):
    wav_scp = write_scp(tmp_path)
    feature_options = ["--hubert_dir", str(hubert_dir), "--layer", "1"] if feature_type == "hubert" else []
    fit_kmeans_main(["--feature_type", feature_type, *feature_options, "--wav_scp", str(wav_scp),
                     "--n_clusters", "6", "--max_frames", "60", "--seed", "1", "--output_dir", str(tmp_path / "km"),
                     "--log_level", "WARNING"])
    description = yaml.safe_load((tmp_path / "km/kmeans.yaml").read_text())
    assert description["feature_type"] == feature_type and description["n_clusters"] == 6
    if feature_type == "hubert":
        assert description["feature_conf"]["layer"] == 1 and description["feature_conf"]["normalize"] is False

    (tmp_path / "keys.1").write_text("utt_c\nutt_b\n")
    extract_units_main(["--kmeans_dir", str(tmp_path / "km"), "--wav_scp", str(wav_scp), str(wav_scp),
                        "--output_names", "units_spk1", "units_spk2", "--output_dir", str(tmp_path),
                        "--log_level", "WARNING"])
    extract_units_main(["--kmeans_dir", str(tmp_path / "km"), "--wav_scp", str(wav_scp),
                        "--output_names", "units_job1", "--output_dir", str(tmp_path),
                        "--key_file", str(tmp_path / "keys.1"), "--keep_repeats", "true", "--log_level", "WARNING"])

    lines = (tmp_path / "units_spk1").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["utt_a", "utt_b", "utt_c"]
    assert (tmp_path / "units_spk2").read_text() == (tmp_path / "units_spk1").read_text()
    units = read_units(tmp_path / "units_spk1")
    assert all(0 <= unit < 6 for sequence in units.values() for unit in sequence)
    assert all(merge_repeats(sequence) == sequence for sequence in units.values())
    repeated = read_units(tmp_path / "units_job1")
    assert list(repeated) == ["utt_b", "utt_c"]
    assert all(len(sequence) == FRAMES_OF_HALF_SECOND for sequence in repeated.values())
    assert {key: merge_repeats(sequence) for key, sequence in repeated.items()} == {
        key: units[key] for key in repeated}


def test_extract_cli_rejects_a_key_not_in_the_scp(tmp_path):
    wav_scp = write_scp(tmp_path)
    save_kmeans(tmp_path / "km", KMeansQuantizer(np.zeros((2, 80))), "logmel", {"n_mels": 80})
    (tmp_path / "keys").write_text("utt_z\n")
    with pytest.raises(SystemExit, match="wav.scp: 1 requested keys are missing, e.g. 'utt_z'"):
        extract_units_main(["--kmeans_dir", str(tmp_path / "km"), "--wav_scp", str(wav_scp),
                            "--output_names", "units", "--output_dir", str(tmp_path), "--key_file", str(tmp_path / "keys")])
    assert not (tmp_path / "units").exists()
