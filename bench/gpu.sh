#!/bin/sh
# Everything a lent GPU should measure, in one go (under 8 minutes): see bench/gpu.py.
# Writes docs/speed_cuda.json and the tables in docs/PERFORMANCE.md. Extra arguments go to bench/gpu.py,
# e.g. --data /path/to/shared/data when the data is not at ../shared/data from the repository.
set -e
cd "$(dirname "$0")/.."
PYTHONPATH="$(pwd)" exec python bench/gpu.py "$@"
