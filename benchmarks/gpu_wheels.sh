#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored through .git/info/exclude) the wheels that the lent GPU
# machines' image lacks and benchmarks/gpu_suite.py needs, for that image's Python 3.12 on
# manylinux x86_64, at the versions of constraints.txt (the tested combination). Run it here,
# where pip reaches the registry; benchmarks/gpu_suite.sh installs them there (carry ['.whl']).
#
#   bash benchmarks/gpu_wheels.sh
#
# What the image lacks: the distributions the suite's processes import (dtda_jax, the benchmarks,
# input_pipeline_speed.py's preparation of a fake CASIA-FASD) minus the image's package list in
# the device tool's KINDS.md. protobuf is there too, in an unknown version: tensorflow-metadata's
# and grain's generated code needs a runtime at least as new as theirs (6.31 / 5.28), so the
# tested one is carried and shadows the image's for the suite's processes only.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(grain array_record dm-tree tensorflow-datasets tensorflow-metadata immutabledict termcolor toml
        portpicker ml_collections tensorboardX mtcnn lz4 protobuf)
SDIST_ONLY=(promise)  # no wheel on the registry: built here (pure Python)
LIMIT_MIB=60

exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"

pinned() {  # NAME==VERSION from constraints.txt, names compared as pip compares them
  local pattern="^$(echo "$1" | sed 's/[-_.]/[-_.]/g')=="
  grep -iE "$pattern" constraints.txt || { echo "no pin for $1 in constraints.txt" >&2; exit 1; }
}

rm -rf .whl && mkdir .whl
specs=()
for name in "${WHEELS[@]}"; do specs+=("$(pinned "$name")"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}"
for name in "${SDIST_ONLY[@]}"; do
  python3 -m pip wheel -q --no-deps --no-binary=:all: -w .whl "$(pinned "$name")"
done

ls -l .whl
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "$(ls .whl/*.whl | wc -l) wheels, $(awk -v b="$total" 'BEGIN { printf "%.1f", b / 1048576 }') MiB in .whl/"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "over ${LIMIT_MIB} MiB: the device tool carries at most 64 MiB with the working tree" >&2
  exit 1
fi
