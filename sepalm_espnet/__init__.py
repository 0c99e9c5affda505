"""sepalm_espnet: ESPnet-style recipe toolkit for SepALM.

The package is layered; a module imports only from its own layer or those below it, and no
import (at module or function level) closes a cycle (test/test_imports.py checks both):

    model     data/, metrics/, utils/ and the model code of separator/, slm_ss/, corrector/,
              synthesizer/, aligner/: tensors, files and algorithms; nothing here knows how
              a trained model is stored
    tasks     tasks/: each component as an ESPnet task; builds a model from its training
              config and loads trained weights strictly and without unpickling (tasks.loading)
    zoo       zoo.py: model-zoo archives and the one table of a system's components
              (zoo.COMPONENTS: their files and the pipeline modes that need them)
    runtime   "load a trained X and run it": separator/registry.py, corrector/generate.py,
              corrector/cascade.py, synthesizer/resynthesize.py, synthesizer/t2s.py,
              aligner/inference.py, separator/reseparation_inference.py, slm_ss/inference.py;
              they load through tasks/ (from files) or zoo (archives);
              separator/speechbrain_import.py turns a SpeechBrain checkpoint into a trained one
    pipeline  pipeline.py: SeparatorModel and SepALM, the whole system; scoring.py: stage 14's
              driver, which scores recipe outputs and times packed systems; evaluate.py:
              a packed system scored on data dirs without training (sepalm-evaluate);
              separate_files.py: sepalm-separate's inputs, outputs and checks
    api       inference.py: the public names (`from sepalm_espnet.inference import SepALM`)
    bin       bin/: command-line entry points

A model module never loads a trained model, so tasks/ can import the model code it trains
(e.g. tasks/t2s.py imports synthesizer/t2s_model.py, and synthesizer/t2s.py, the runtime of
that model, imports tasks/t2s.py). `LAYERS` below is this list as data, lowest first: a
package name covers its modules, a module named on its own overrides its package's layer.
"""

__version__ = "0.1.0"

LAYERS = (
    ("model", (
        "sepalm_espnet",
        "sepalm_espnet.aligner",
        "sepalm_espnet.corrector",
        "sepalm_espnet.data",
        "sepalm_espnet.metrics",
        "sepalm_espnet.separator",
        "sepalm_espnet.slm_ss",
        "sepalm_espnet.synthesizer",
        "sepalm_espnet.utils",
    )),
    ("tasks", ("sepalm_espnet.tasks",)),
    ("zoo", ("sepalm_espnet.zoo",)),
    ("runtime", (
        "sepalm_espnet.aligner.inference",
        "sepalm_espnet.corrector.cascade",
        "sepalm_espnet.corrector.generate",
        "sepalm_espnet.separator.registry",
        "sepalm_espnet.separator.reseparation_inference",
        "sepalm_espnet.separator.speechbrain_import",
        "sepalm_espnet.slm_ss.inference",
        "sepalm_espnet.synthesizer.resynthesize",
        "sepalm_espnet.synthesizer.t2s",
    )),
    ("pipeline", ("sepalm_espnet.pipeline", "sepalm_espnet.scoring", "sepalm_espnet.evaluate",
                  "sepalm_espnet.separate_files")),
    ("api", ("sepalm_espnet.inference",)),
    ("bin", ("sepalm_espnet.bin",)),
)
