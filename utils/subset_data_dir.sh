#!/usr/bin/env bash
# utils/subset_data_dir.sh (--keys FILE | --first N | --last N | --random N [--seed S]) <src-dir> <dest-dir>
# See sepalm_espnet/bin/subset_data_dir.py (--help).
exec python -m sepalm_espnet.bin.subset_data_dir "$@"
