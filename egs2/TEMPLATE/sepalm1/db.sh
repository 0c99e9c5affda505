# shellcheck shell=bash
# Corpus roots, one variable per corpus (paper §4.1 training/test corpora, §4.4 out-of-domain sets).
# Empty means "not available here"; local/data.sh names the variable when it needs one.
# The mini recipe synthesizes its own data and needs none of these.
# Each may also come from the environment, e.g. `LIBRI2MIX=/corpora/Libri2Mix ./run.sh`.

# LibriSpeech: holds train-clean-100/ train-clean-360/ dev-clean/ test-clean/ (Libri2Mix texts).
LIBRISPEECH=${LIBRISPEECH:-}
# Libri2Mix as LibriMix's generate_librimix.sh writes it: holds wav16k/min/{metadata,train-100,...}.
LIBRI2MIX=${LIBRI2MIX:-}
# WHAM! as wham_scripts' create_wham_from_scratch.py writes it: holds wav16k/min/{tr,cv,tt}/.
WHAM=${WHAM:-}
# WHAMR! as whamr_scripts' create_wham_from_scratch.py writes it: holds wav16k/min/{tr,cv,tt}/.
WHAMR=${WHAMR:-}
# wsj0-2mix (the "2speakers" folder of create-speaker-mixtures): holds wav16k/min/tt/{s1,s2}/.
WSJ0_2MIX=${WSJ0_2MIX:-}
# MUSAN: holds noise/free-sound/ and noise/sound-bible/.
MUSAN=${MUSAN:-}
# DEMAND, the 16 kHz archives (<ENV>_16k.zip) unzipped here: holds <ENV>/ch01.wav.
DEMAND=${DEMAND:-}
