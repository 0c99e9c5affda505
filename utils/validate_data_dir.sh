#!/usr/bin/env bash
# utils/validate_data_dir.sh [--require-text] [--check_audio] <data-dir>
# --check_audio reads each audio file's header (truncated files, sources of another length).
# See sepalm_espnet/bin/validate_data_dir.py (--help).
exec python -m sepalm_espnet.bin.validate_data_dir "$@"
