"""Import every package the toolkit relies on, so a broken environment fails loudly."""
import importlib
import sys

MODULES = [
    "torch", "numpy", "scipy", "soundfile", "kaldiio", "yaml", "sentencepiece",
    "espnet2.tasks.enh", "espnet_model_zoo", "whisper", "faster_whisper", "dac",
    "transformers", "peft", "phonemizer", "pesq", "pystoi", "fast_bss_eval", "jiwer",
    "sklearn", "pyroomacoustics", "safetensors", "torchaudio", "torch_stoi", "resemblyzer", "webrtcvad",
    "speechbrain.lobes.models.dual_path",
]


def main() -> None:
    failed = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every failure, not just the first
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    if failed:
        sys.exit("environment check failed:\n  " + "\n  ".join(failed))
    print(f"environment OK ({len(MODULES)} modules)")


if __name__ == "__main__":
    main()
