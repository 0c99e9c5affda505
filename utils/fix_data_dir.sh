#!/usr/bin/env bash
# utils/fix_data_dir.sh <data-dir>
# See sepalm_espnet/bin/fix_data_dir.py (--help).
exec python -m sepalm_espnet.bin.fix_data_dir "$@"
