#!/usr/bin/env bash
# utils/spk2utt_to_utt2spk.sh <spk2utt> [<utt2spk>]  (stdout without <utt2spk>)
# See sepalm_espnet/bin/spk2utt_to_utt2spk.py (--help).
exec python -m sepalm_espnet.bin.spk2utt_to_utt2spk "$@"
