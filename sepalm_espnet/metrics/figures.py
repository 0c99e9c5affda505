"""Pictures beside RESULTS.md: a bar chart of the systems (the ablation rows side by side), the
training curves of every experiment (ESPnet's trainer draws `<exp>/images/*.png`; the codec
trainer, ours, gets the same through `plot_curves`), linked from a RESULTS.md section.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path
from sepalm_espnet.metrics.report import NotScored, Results

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
BAR_METRICS = {"si_snri": "SI-SNRi (dB)", "pesqi": "PESQi"}
# ESPnet also plots timings, learning rates, gradient norms...: not training curves a reader compares.
BOOKKEEPING = re.compile(r"(time|clip|grad_norm|lr\d*|loss_scale|gpu_max_cached_mem_GB)$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _save(figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_curves(history: Sequence[Mapping[str, float]], outdir: PathLike, x_key: str = "step") -> List[Path]:
    """One PNG per logged quantity against `x_key`, named like ESPnet's (`<name>.png`)."""
    pyplot = _pyplot()
    names = sorted({name for row in history for name in row if name != x_key})
    written = []
    for name in names:
        points = [(row[x_key], row[name]) for row in history if name in row and math.isfinite(row[name])]
        if not points:
            continue
        figure, axes = pyplot.subplots(figsize=(5, 3))
        axes.plot(*zip(*points), marker=".")
        axes.set_xlabel(x_key)
        axes.set_ylabel(name)
        axes.grid(True, alpha=0.3)
        written.append(_save(figure, Path(outdir) / f"{name.replace('/', '_')}.png"))
    return written


def results_bar_chart(results: Results, path: PathLike, metric: str = "si_snri") -> Optional[Path]:
    """Horizontal bars of `metric` per system, one panel per test set; None if nothing has it."""
    panels = {test_set: {name: metrics[metric] for name, metrics in systems.items()
                         if not isinstance(metrics, NotScored) and metrics.get(metric) is not None
                         and math.isfinite(metrics[metric])}
              for test_set, systems in results.items()}
    panels = {test_set: values for test_set, values in panels.items() if values}
    if not panels:
        return None
    pyplot = _pyplot()
    rows = max(len(values) for values in panels.values())
    figure, axes = pyplot.subplots(1, len(panels), figsize=(6 * len(panels), 0.45 * rows + 1.2), squeeze=False)
    for axis, (test_set, values) in zip(axes[0], panels.items()):
        names = list(values)[::-1]  # the table's order, top to bottom
        bars = axis.barh(names, [values[n] for n in names], color="#4c72b0")
        axis.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_title(test_set)
        axis.set_xlabel(BAR_METRICS.get(metric, metric))
        axis.tick_params(axis="y", labelsize=8)
    return _save(figure, Path(path))


def training_curve_images(expdir: PathLike) -> Dict[str, List[Path]]:
    """{experiment dir name: its curve PNGs} of every `<expdir>/*/images/` of a training (a dir
    with the config.yaml ESPnet's trainer, or ours, writes), bookkeeping left out."""
    found: Dict[str, List[Path]] = {}
    for images in sorted(Path(expdir).glob(f"*/{IMAGES_DIR}")):
        if not (images.parent / "config.yaml").is_file():
            continue
        curves = sorted(p for p in images.glob("*.png") if not BOOKKEEPING.search(p.stem))
        if curves:
            found[images.parent.name] = curves
    return found


def figures_section(results_md: PathLike, bar_chart: Optional[PathLike], curves: Mapping[str, Sequence[Path]]) -> str:
    """Markdown linking the pictures, by paths relative to RESULTS.md."""
    here = Path(results_md).parent
    lines: List[str] = []
    if bar_chart is not None:
        lines += ["", "## Figures", "", f"![SI-SNRi per system]({os.path.relpath(bar_chart, here)})"]
    if curves:
        lines += ["", "## Training curves", ""]
        for experiment, images in curves.items():
            links = ", ".join(f"[{p.stem}]({os.path.relpath(p, here)})" for p in images)
            lines.append(f"- {experiment}: {links}")
    return "\n".join(lines) + ("\n" if lines else "")
