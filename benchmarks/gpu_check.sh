#!/bin/bash
# The GPU check (benchmarks/gpu_check.py) from a bare checkout, and the authors' code it compares against.
#
#   benchmarks/gpu_check.sh official [MIRRORS]   # here: copy the authors' model files out of repositories
#                                                # fetched beforehand (default /work/.mirror) into ./official
#   benchmarks/gpu_check.sh [ARGS...]            # on the GPU machine: $OUT/gpu_check.json and gpu_check.log
#
# ./official is ignored by git and never committed; only the files the check imports are copied (a few
# hundred KB, so the folder can travel with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = official ]; then
    mirrors=${2:-/work/.mirror}
    while read -r repo folder files; do
        git_dir="$mirrors/${repo/\//+}/repo"
        if [ ! -d "$git_dir" ]; then
            echo "skipped $repo: $git_dir is missing (fetch github:$repo first)" >&2
            continue
        fi
        rm -rf "official/$folder"
        mkdir -p "official/$folder"
        # shellcheck disable=SC2086  # $files is a list of paths
        git --git-dir="$git_dir" archive HEAD $files | tar -x -C "official/$folder"
        echo "official/$folder: $repo at $(git --git-dir="$git_dir" rev-parse --short HEAD)"
    done <<'LIST'
va1shn9v/PromptIR PromptIR net/model.py
JingyunLiang/SwinIR SwinIR models/network_swinir.py
swz30/Restormer Restormer basicsr/models/archs/restormer_arch.py
megvii-research/NAFNet NAFNet basicsr/models/archs/NAFNet_arch.py basicsr/models/archs/arch_util.py basicsr/models/archs/local_arch.py
LIST
    exit 0
fi

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec python3 benchmarks/gpu_check.py --official official "$@"
