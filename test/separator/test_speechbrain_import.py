"""SpeechBrain's own SepFormer, saved in its hub layout, imported: our model separates exactly as
SpeechBrain's separate_batch does, and anything that is not that model is refused by name."""
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from speechbrain.inference.separation import SepformerSeparation
from speechbrain.lobes.models import dual_path

from sepalm_espnet import zoo
from sepalm_espnet.pipeline import SeparatorModel
from sepalm_espnet.separator import speechbrain_import
from sepalm_espnet.separator.registry import enh_model_separate_fn, load_enh_model
from sepalm_espnet.separator.speechbrain_import import (
    SPEECHBRAIN_DEFAULTS,
    SpeechBrainImportError,
    import_sepformer,
)
from sepalm_espnet.tasks.loading import UnsafeWeightsError

TINY = dict(channels=16, kernel=16, d_model=16, nhead=2, d_ffn=32, layers=1, blocks=2, K=10, spks=2)
PAPER = dict(channels=256, kernel=16, d_model=256, nhead=8, d_ffn=1024, layers=8, blocks=2, K=250, spks=2)
TOLERANCE = 1e-6  # max abs waveform difference: 1e-5 asked; 1e-6 also catches a LayerNorm eps of 1e-5 (SpeechBrain: 1e-6)

def speechbrain_separate(modules, mixture: torch.Tensor, spks: int) -> torch.Tensor:
    """SpeechBrain's own inference class: (B, T, spks)."""
    return SepformerSeparation(modules=modules, hparams={"num_spks": spks}).separate_batch(mixture)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, speechbrain_sepformer):
    """(SpeechBrain modules, their hub-layout dir, our imported experiment dir)."""
    root = tmp_path_factory.mktemp("sb")
    modules = speechbrain_sepformer(root / "sepformer-tiny", TINY)
    import_sepformer(str(root / "sepformer-tiny"), root / "exp", fs=16000)
    return modules, root / "sepformer-tiny", root / "exp"


def ours_separate(exp: Path, mixture: torch.Tensor):
    model, _ = load_enh_model(None, exp / "valid.si_snr_loss.ave.pth")
    return torch.stack(enh_model_separate_fn(model)(mixture), dim=-1)


def test_defaults_are_speechbrains_own():
    for name, defaults in SPEECHBRAIN_DEFAULTS.items():
        cls = torch.nn.ConvTranspose1d if name == "Decoder" else getattr(dual_path, name)
        signature = inspect.signature(cls.__init__).parameters
        theirs = {key: (p.default if p.default is not inspect.Parameter.empty else speechbrain_import.REQUIRED)
                  for key, p in signature.items() if key not in ("self", "device", "dtype")}
        assert theirs == defaults, name


# Frame counts (T - 16) // 8 + 1 around multiples of K and K / 2: every padding case of SpeechBrain's.
@pytest.mark.parametrize("samples", [400, 432, 440, 480, 3999, 4000])
def test_tiny_import_separates_exactly_like_speechbrain(tiny, samples):
    modules, _, exp = tiny
    torch.manual_seed(samples)
    mixture = torch.randn(2, samples)
    theirs = speechbrain_separate(modules, mixture, TINY["spks"])
    ours = ours_separate(exp, mixture)
    assert ours.shape == theirs.shape
    difference = (ours - theirs).abs().max().item()
    print(f"tiny, {samples} samples: max abs difference {difference:.2e} (output peak {theirs.abs().max():.2f})")
    assert difference < TOLERANCE


def test_paper_size_import_separates_exactly_like_speechbrain(tmp_path, speechbrain_sepformer):
    modules = speechbrain_sepformer(tmp_path / "sepformer-paper", PAPER)
    assert sum(p.numel() for m in modules.values() for p in m.parameters()) == 25_679_361
    import_sepformer(str(tmp_path / "sepformer-paper"), tmp_path / "exp", fs=16000)
    torch.manual_seed(1)
    mixture = 0.1 * torch.randn(1, 32000)  # 2 s
    theirs = speechbrain_separate(modules, mixture, PAPER["spks"])
    ours = ours_separate(tmp_path / "exp", mixture)
    difference = (ours - theirs).abs().max().item()
    print(f"paper size, 2 s: max abs difference {difference:.2e} (output peak {theirs.abs().max():.2f})")
    assert difference < TOLERANCE


def test_imported_experiment_loads_like_a_trained_one(tiny, tmp_path):
    modules, _, exp = tiny
    torch.manual_seed(3)
    mixture = torch.randn(1, 8000)
    theirs = speechbrain_separate(modules, mixture, TINY["spks"])[0].numpy()
    for source in (exp, zoo.pack(tmp_path / "sep.zip", {"separator": {
            "config": exp / "config.yaml", "model": exp / "valid.si_snr_loss.ave.pth"}})):
        separator = SeparatorModel.from_pretrained(source, cache_dir=tmp_path / "cache")
        assert separator.fs == 16000
        ours = np.stack(separator.separate(mixture[0].numpy(), sample_rate=16000), axis=-1)
        assert np.abs(ours - theirs).max() < TOLERANCE
    provenance = (exp / "speechbrain_import.yaml").read_text()
    assert "sample_rate: 16000" in provenance and "masknet.ckpt" in provenance


def test_hyperparams_are_read_as_data_never_run(tmp_path, speechbrain_sepformer):
    marker = tmp_path / "ran"
    side_effects = (f"side_effect: !apply:os.system\n    - touch {marker}\n"
                    f"also: !new:subprocess.Popen\n    args: [touch, {marker}]\n")
    src = tmp_path / "sb"
    speechbrain_sepformer(src, TINY, edit=lambda text: text + side_effects)
    import_sepformer(str(src), tmp_path / "exp")  # tags nobody needs stay unread data
    assert not marker.exists()
    text = (src / "hyperparams.yaml").read_text()
    (src / "hyperparams.yaml").write_text(text.replace("    K: 10\n", f"    K: !apply:os.system [touch {marker}]\n"))
    with pytest.raises(SpeechBrainImportError, match=r"hyperparams.yaml:\d+: Dual_Path_Model.K is !apply:os.system"):
        import_sepformer(str(src), tmp_path / "exp2")
    assert not marker.exists() and not (tmp_path / "exp2").exists()


@pytest.mark.parametrize("edit, message", [
    (("    linear_layer_after_inter_intra: false\n", ""),
     "Dual_Path_Model.linear_layer_after_inter_intra = True: our SepFormer computes only False"),
    (("    norm: ln\n", "    norm: gln\n"), "Dual_Path_Model.norm = 'gln'"),
    (("    norm_before: true\n", "    norm_before: false\n"), "SBTransformerBlock.norm_before = False"),
    (("    skip_around_intra: true\n", "    skip_around_intra: true\n    use_global_pos_enc: true\n"),
     "use_global_pos_enc = True"),
    (("    bias: false\n", "    bias: true\n"), "Decoder.bias = True"),
    (("    K: 10\n", "    K: 10\n    chunk: 3\n"), "Dual_Path_Model option 'chunk' is not understood"),
    (("!new:speechbrain.lobes.models.dual_path.Dual_Path_Model", "!new:speechbrain.lobes.models.conv_tasnet.MaskNet"),
     "modules.masknet is !new:speechbrain.lobes.models.conv_tasnet.MaskNet"),
    (("    num_spks: !ref <num_spks>\n", "    num_spks: !ref <num_spks> + 1\n"), "only plain references"),
    (("    masknet: !ref <MaskNet>\n", ""), "`modules` must name exactly"),
    (("    K: 10\n", "    K: '10'\n"), "Dual_Path_Model.K = '10' is not a positive integer"),
])
def test_models_we_do_not_compute_are_refused_by_line(tmp_path, speechbrain_sepformer, edit, message):
    def replace(text):
        assert edit[0] in text
        return text.replace(edit[0], edit[1], 1)

    speechbrain_sepformer(tmp_path / "sb", TINY, edit=replace)
    with pytest.raises(SpeechBrainImportError, match=message):
        import_sepformer(str(tmp_path / "sb"), tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def edit_masknet(src: Path, edit):
    state = torch.load(src / "masknet.ckpt", weights_only=True)
    edit(state)
    torch.save(state, src / "masknet.ckpt")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("dual_mdl.1.inter_norm.bias"), "no weight for 'separator.blocks.1.inter_norm.bias'"),
    (lambda s: s.update(extra=torch.zeros(1)), "weight 'extra' has no place in our SepFormer"),
    (lambda s: s.update({"dual_mdl.0.intra_mdl.mdl.layers.0.pos_ffn.ffn.0.weight": torch.zeros(64, 16)}),
     r"'separator.blocks.0.intra.layers.layers.0.linear1.weight': the checkpoint's shape \(64, 16\) is not \(32, 16\)"),
    (lambda s: s.update({"dual_mdl.0.intra_mdl.pos_enc.pe": torch.zeros(1, 2500, 16)}), "not the sinusoid table"),
    (lambda s: s.update(bad=[1, 2]), "refusing to unpickle|entries that are not tensors"),
])
def test_weights_that_do_not_match_are_refused_by_name(tmp_path, speechbrain_sepformer, edit, message):
    src = tmp_path / "sb"
    speechbrain_sepformer(src, TINY)
    edit_masknet(src, edit)
    with pytest.raises((SpeechBrainImportError, UnsafeWeightsError), match=message):
        import_sepformer(str(src), tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def test_sample_rate_is_recorded_and_another_recipe_rate_refused(tmp_path, speechbrain_sepformer):
    src = tmp_path / "sb"
    speechbrain_sepformer(src, TINY, sample_rate=8000)
    with pytest.raises(SpeechBrainImportError, match="separates 8000 Hz audio, the recipe runs at --fs 16000"):
        import_sepformer(str(src), tmp_path / "exp", fs=16000)
    text = (src / "hyperparams.yaml").read_text().replace("sample_rate: 8000\n", "")
    (src / "hyperparams.yaml").write_text(text)
    with pytest.raises(SpeechBrainImportError, match="has no sample_rate: give the checkpoint's rate"):
        import_sepformer(str(src), tmp_path / "exp")
    import_sepformer(str(src), tmp_path / "exp", sample_rate=8000)
    _, args = load_enh_model(None, tmp_path / "exp/valid.si_snr_loss.ave.pth")
    assert args.sample_rate == 8000


def test_an_existing_import_is_never_overwritten(tiny):
    _, src, exp = tiny
    before = (exp / "valid.si_snr_loss.ave.pth").read_bytes()
    with pytest.raises(SpeechBrainImportError, match="exists: import into a new directory"):
        import_sepformer(str(src), exp)
    assert (exp / "valid.si_snr_loss.ave.pth").read_bytes() == before


def test_a_hub_id_fetches_the_four_files_and_failures_name_it(tiny, tmp_path, monkeypatch):
    import huggingface_hub

    _, src, _ = tiny
    fetched = []

    def local_hub(repo_id, filename, cache_dir=None):
        fetched.append((repo_id, filename))
        return str(src / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", local_hub)
    import_sepformer("speechbrain/sepformer-tiny", tmp_path / "exp")
    assert sorted(f for _, f in fetched) == ["decoder.ckpt", "encoder.ckpt", "hyperparams.yaml", "masknet.ckpt"]

    def offline(repo_id, filename, cache_dir=None):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(SpeechBrainImportError, match="speechbrain/sepformer-whamr16k: could not fetch it .* no network"):
        import_sepformer("speechbrain/sepformer-whamr16k", tmp_path / "exp2")
    with pytest.raises(SpeechBrainImportError, match="neither a model directory nor a hub id"):
        import_sepformer(str(tmp_path / "missing/dir/x"), tmp_path / "exp3")


def test_hub_files_with_yaml_anchors_import_the_same(tmp_path, speechbrain_sepformer):
    """Some hub files (e.g. sepformer-whamr-enhancement) name the blocks by YAML anchors, not !ref."""
    def anchors(text):
        for name, anchor in (("SBtfintra", "id001"), ("SBtfinter", "id002")):
            text = text.replace(f"{name}: !new:", f"{name}: &{anchor} !new:")
            text = text.replace(f"!ref <{name}>", f"*{anchor}")
        assert "*id001" in text and "*id002" in text
        return "seed: 1234\n__set_seed: !apply:torch.manual_seed [1234]\n" + text

    modules = speechbrain_sepformer(tmp_path / "sb", TINY, edit=anchors)
    import_sepformer(str(tmp_path / "sb"), tmp_path / "exp")
    mixture = torch.randn(1, 3000)
    theirs = speechbrain_separate(modules, mixture, TINY["spks"])
    assert (ours_separate(tmp_path / "exp", mixture) - theirs).abs().max() < TOLERANCE
