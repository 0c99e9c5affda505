#!/usr/bin/env bash
# utils/utt2spk_to_spk2utt.sh <utt2spk> [<spk2utt>]  (stdout without <spk2utt>)
# See sepalm_espnet/bin/utt2spk_to_spk2utt.py (--help).
exec python -m sepalm_espnet.bin.utt2spk_to_spk2utt "$@"
