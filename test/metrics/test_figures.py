"""Pictures beside RESULTS.md: curves drawn from a training history, the systems' bar chart,
and the RESULTS.md section that links them (and ESPnet's own curves) by relative paths."""
import numpy as np
from matplotlib import image

from sepalm_espnet.metrics import figures
from sepalm_espnet.metrics.report import NotScored


def test_curves_are_drawn_per_logged_quantity(tmp_path):
    history = [{"step": 10, "loss": 3.0, "mel/loss": 1.0}, {"step": 20, "loss": 2.0, "mel/loss": float("nan")}]
    written = figures.plot_curves(history, tmp_path / "images")
    assert sorted(p.name for p in written) == ["loss.png", "mel_loss.png"]
    assert image.imread(written[0]).shape[0] > 100


def test_bar_chart_has_a_panel_per_test_set_and_skips_what_has_no_value(tmp_path):
    results = {"test": {"Separator only (x)": {"si_snri": 10.5}, "SepALM": {"si_snri": 12.0},
                        "Corrector": {"wer": 20.0}, "missing": NotScored("no input")},
               "ood": {"Separator only (x)": {"si_snri": -1.0}}}
    path = figures.results_bar_chart(results, tmp_path / "bars.png")
    width = image.imread(path).shape[1]
    one_panel = figures.results_bar_chart({"test": results["test"]}, tmp_path / "one.png")
    assert width > 1.5 * image.imread(one_panel).shape[1]
    assert figures.results_bar_chart({"test": {"Corrector": {"wer": 20.0}}}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_the_section_links_the_bar_chart_and_each_experiment_s_curves(tmp_path):
    for name in ("sep_x/images/loss.png", "sep_x/images/si_snr_loss.png", "sep_x/images/iter_time.png",
                 "sep_x/images/optim0_lr0.png", "cor_y/images/acc.png", "cor_y/images/grad_norm.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        image.imsave(tmp_path / name, np.zeros((2, 2)))
        (tmp_path / name).parents[1].joinpath("config.yaml").write_text("{}")
    (tmp_path / "pretrained_x/images").mkdir(parents=True)  # an evaluation's own bar chart: no training
    image.imsave(tmp_path / "pretrained_x/images/RESULTS_si_snri.png", np.zeros((2, 2)))
    curves = figures.training_curve_images(tmp_path)
    assert {k: [p.name for p in v] for k, v in curves.items()} == {
        "cor_y": ["acc.png"], "sep_x": ["loss.png", "si_snr_loss.png"]}
    section = figures.figures_section(tmp_path / "RESULTS.md", tmp_path / "images/RESULTS_si_snri.png", curves)
    assert "![SI-SNRi per system](images/RESULTS_si_snri.png)" in section
    assert "- sep_x: [loss](sep_x/images/loss.png), [si_snr_loss](sep_x/images/si_snr_loss.png)" in section
    assert figures.figures_section(tmp_path / "RESULTS.md", None, {}) == ""
