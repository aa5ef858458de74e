#!/usr/bin/env bash
# The GPU tier's checks on a machine with an NVIDIA GPU, as one script: installs what it needs, runs the GPU
# tests on the device (no simulator), then the GPU benchmark, and prints the figures.  About 8 minutes.
#
#   bash bench/gpu_check.sh fetch   # where pip reaches a package registry: the wheels it may need, into .whl/
#   bash bench/gpu_check.sh         # on the GPU machine (carry .whl/ there when it has no registry)
#
# It uses the machine's python3 (PYTHON=... to choose) with its torch and, when that imports and finds the GPU,
# its numba-cuda; whatever tierstore lacks (lmdb, zstandard, cachetools, numba-cuda==0.30.4) comes from .whl/,
# else from the registry.  Logs and the benchmark's JSON go to $OUT (default /tmp/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(lmdb==3.0.0 zstandard==0.25.0 cachetools==8.0.2 numba-cuda==0.30.4 cuda-core==1.2.2 cuda-pathfinder==1.9.1)

if [ "${1:-}" = fetch ]; then
    # Python 3.12 on x86-64 Linux, as on the lent H200 machines.
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
fi

PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
say() { echo "== [$(( $(date +%s) - started ))s] $*"; }

install() {  # install() NAME==VERSION...: from .whl/ when it is there, else from the registry; never their deps
    if [ -d .whl ]; then
        "$PY" -m pip install -q --no-index --no-deps --find-links .whl "$@" && return 0
    fi
    "$PY" -m pip install -q --no-deps "$@"
}

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || say "nvidia-smi failed"
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'

say "install"
for spec in lmdb==3.0.0 zstandard==0.25.0 cachetools==8.0.2; do
    "$PY" -c "import ${spec%%==*}" 2>/dev/null || install "$spec" || say "could not install $spec"
done
cuda_ok() { "$PY" -c 'from numba import cuda; import numba_cuda; assert cuda.is_available()' 2>/dev/null; }
if ! cuda_ok; then
    say "the machine's numba-cuda is missing or finds no GPU: numba-cuda==0.30.4"
    install numba-cuda==0.30.4 || say "could not install numba-cuda"
    cuda_ok || install cuda-core==1.2.2 cuda-pathfinder==1.9.1
fi
"$PY" - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import numba, numba_cuda, numpy, torch, lmdb
from numba import cuda
from tierstore.gpu import unavailable_reason
print("numba", numba.__version__, "numba-cuda", numba_cuda.__version__, "numpy", numpy.__version__,
      "torch", torch.__version__, "lmdb", lmdb.__version__)
device = cuda.get_current_device()
print("numba sees", device.name, "compute capability", device.compute_capability)
print("GPU tier:", unavailable_reason() or "available")
EOF

say "GPU tests on the device (tests/gpu, no simulator)"
TIERSTORE_GPU_TESTS=1 timeout "${TEST_SECONDS:-240}" "$PY" -m pytest tests/gpu -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/tests.log"
tests_status=${PIPESTATUS[0]}

say "benchmark (python -m bench.bench_gpu --dlrm 1 --dlrm-max-rows 500000)"
timeout "${BENCH_SECONDS:-200}" "$PY" -m bench.bench_gpu --dlrm 1 --dlrm-max-rows 500000 \
    --workdir /tmp/gpu-check-bench "$@" 2>&1 \
    | tee "$OUT/bench.log"
bench_status=${PIPESTATUS[0]}
tail -n 1 "$OUT/bench.log" > "$OUT/bench.json"

say "summary"
echo "GPU tests: exit $tests_status ($(tail -n 1 "$OUT/tests.log"))"
echo "benchmark: exit $bench_status"
grep -E "rows/s|samples/s| / |hit rate|difference" "$OUT/bench.log" | grep -v '^{' || true
[ "$tests_status" = 0 ] && [ "$bench_status" = 0 ]
