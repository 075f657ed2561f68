#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (make gpu-check, or bash benchmarks/gpu_check.sh):
#   1. every Triton kernel against the step-by-step reference on CUDA tensors: tests/test_triton.py with
#      RFWP_TRITON_DEVICE=cuda (compiled, not interpreted): float32 and bfloat16 inputs, awkward shapes, initial
#      states, resets, the gradients of every input and of the initial state;
#   2. the GPU benchmark, python -m benchmarks.gpu: results/benchmarks/gpu.md and gpu.json.
# At most 8 minutes in all (GPU_CHECK_BUDGET_S, default 470 s: every step runs under `timeout`, the benchmark
# with what the tests left). Where there is no CUDA device it says so and exits 0. Exit status 1 if a test
# fails, the benchmark fails or runs out of time, or no Python with a CUDA torch can be had.
#
# Python: .venv (make venv) or .venv-gpu if its torch sees the GPU, else python3 if its torch and triton do,
# else a new .venv-gpu with the pinned versions of requirements.txt that the check needs (PyPI's Linux wheel of
# torch==2.13.0 is the CUDA build, about 3 GB): that needs PyPI; if it cannot be reached the script says so.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${GPU_CHECK_BUDGET_S:-470}
SECONDS=0
left() { echo $((BUDGET - SECONDS)); }
upto() { local s=$(($(left) - $1)); echo $((s > 30 ? s : 30)); }  # seconds left less $1 reserved, at least 30
say() { echo "gpu_check: $*"; }

if ! { nvidia-smi -L 2>/dev/null | grep -q "^GPU"; } && ! ls /dev/nvidia[0-9]* >/dev/null 2>&1; then
    say "no CUDA device here (nvidia-smi lists no GPU, no /dev/nvidia*): nothing to check; the Triton kernels" \
        "are checked on CPU under Triton's interpreter by pytest -m triton."
    exit 0
fi

sees_cuda() {  # a Python whose torch sees a CUDA device and which has triton
    "$1" -c "import sys, torch, triton; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1
}
PY=""
for candidate in .venv/bin/python .venv-gpu/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && sees_cuda "$candidate"; then
        PY=$candidate
        break
    fi
done
if [ -z "$PY" ]; then
    say "no Python here has a torch that sees the GPU and triton: creating .venv-gpu from the pinned requirements"
    packages=$(grep -E '^(torch|triton|numpy|pandas|matplotlib|seaborn|tqdm|ninja|pytest)==' requirements.txt)
    # shellcheck disable=SC2086
    if ! { timeout 60 python3 -m venv .venv-gpu &&
           timeout "$(upto 240)" .venv-gpu/bin/python -m pip install --quiet --disable-pip-version-check $packages; }; then
        say "FAILED to install the pinned requirements into .venv-gpu (is PyPI reachable from here? pip's error is" \
            "above). Install torch==2.13.0 (its CUDA build) and triton==3.9.0, numpy, pandas, matplotlib, seaborn," \
            "tqdm and pytest as pinned in requirements.txt into a python3, then rerun." >&2
        exit 1
    fi
    PY=.venv-gpu/bin/python
    if ! sees_cuda "$PY"; then
        say "FAILED: the torch installed into .venv-gpu does not see the GPU:" >&2
        "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" >&2
        exit 1
    fi
fi
# rfwp and the benchmarks are imported from this checkout (the Python may not have rfwp installed).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
say "$("$PY" -c "import torch, triton; print(f'{torch.cuda.get_device_name()}: torch {torch.__version__}' \
    f' (CUDA {torch.version.cuda}), triton {triton.__version__}')") ($PY, $(left) s left)"

status=0
echo "== 1. Triton kernels against the reference on CUDA tensors (tests/test_triton.py) =="
# At most the budget less 3 minutes for the benchmark; the slow test (a sm_80 build without a GPU) is CI's.
if ! RFWP_TRITON_DEVICE=cuda timeout "$(upto 180)" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
        tests/test_triton.py; then
    say "FAILED: the Triton kernels on CUDA (or the tests ran out of time)" >&2
    status=1
fi

echo "== 2. GPU benchmark (python -m benchmarks.gpu; $(left) s left) =="
if ! timeout "$(upto 0)" "$PY" -m benchmarks.gpu --budget "$(upto 60)"; then
    say "FAILED: the GPU benchmark (or it ran out of time; results/benchmarks/gpu.md has the cases it finished)" >&2
    status=1
fi
say "$([ $status = 0 ] && echo "passed" || echo "FAILED") in ${SECONDS} s; results in results/benchmarks/gpu.md"
exit $status
