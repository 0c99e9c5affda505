"""sepalm_espnet: ESPnet-style recipes for SepALM (separate, correct in text, re-synthesize, align)."""
from setuptools import find_packages, setup

setup(
    name="sepalm_espnet",
    version="0.1.0",
    description="SepALM: audio language models as error correctors for robust speech separation",
    packages=find_packages(include=["sepalm_espnet", "sepalm_espnet.*"]),
    python_requires=">=3.10",
    # The pinned stack and its install traps live in tools/install.sh; these are the floor.
    install_requires=["torch", "numpy", "soundfile", "kaldiio", "PyYAML", "espnet"],
    entry_points={
        "console_scripts": [
            "sepalm-evaluate=sepalm_espnet.bin.sepalm_evaluate:main",
            "sepalm-separate=sepalm_espnet.bin.sepalm_separate:main",
            "sepalm-validate-data-dir=sepalm_espnet.bin.validate_data_dir:main",
        ]
    },
)
