#!/usr/bin/env bash
# utils/validate_data_dir.sh [--require-text] <data-dir>
# See sepalm_espnet/bin/validate_data_dir.py (--help).
exec python -m sepalm_espnet.bin.validate_data_dir "$@"
