#!/usr/bin/env bash
# The GPU run of the benchmarks (issue 17), from the repository root, on a
# machine with an NVIDIA GPU, Python 3 with torch (CUDA) and jax (CUDA), and
# no network:
#
#     OUT=/some/dir bash benchmarks/gpu_run.sh
#
# 1. installs the wheels of .whl/ (keras, keras-hub and the packages they
#    import that such an image lacks) into /tmp/site, without the network;
#    fetch them beforehand on a machine with the network (Python 3.12 there,
#    the versions of your environment; `.whl/` is not tracked):
#      pip download --no-deps --only-binary=:all: --python-version 3.12 \
#        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#        -d .whl keras==3.15.1 keras-hub==0.32.0 kagglehub==1.0.2 \
#        kagglesdk==0.1.28 namex==0.1.0 optree==0.20.0
# 2. writes down the GPU (nvidia-smi) and the library versions;
# 3. runs, each step under its own time limit so that a hung step cannot
#    take the others' time, in order of value: the attention table
#    (attention_ops.py), generation, training (each on JAX and PyTorch, via
#    `make_report.py --device gpu`), then a correctness smoke test of the
#    attention op on the GPU (a subset of tests/ops/test_attention.py);
# 4. copies the log and the results (benchmarks/results/gpu/*.json) into
#    $OUT after every step, so that a cut-off run still returns them.
#
# About 7 minutes at most (GPU_RUN_SECONDS). BENCH_GPU_SMOKE=1 runs it with
# tiny sizes (any machine, to check the script itself; GPU_RUN_SCALE=4 gives
# a CPU's slower steps 4 times the time). Back on the development machine:
# copy the JSON files into benchmarks/results/gpu/ and run
# `python benchmarks/make_report.py --render-only`.
set -u

OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"
START=$(date +%s)
# The whole run must end by then (seconds after START).
TOTAL=${GPU_RUN_SECONDS:-420}

say() { echo "== $(($(date +%s) - START)) s: $*" | tee -a "$LOG"; }

# Limits times this (a slower machine, e.g. a CPU for BENCH_GPU_SMOKE=1).
SCALE=${GPU_RUN_SCALE:-1}

# Runs "$@" for at most $1 seconds, and never past the end of the run.
step() {
    local limit=$(($1 * SCALE))
    shift
    local left=$((TOTAL - ($(date +%s) - START) - 5))
    if ((left < limit)); then limit=$left; fi
    if ((limit < 10)); then
        say "skipped (no time left): $*"
        return
    fi
    say "start (limit ${limit} s): $*"
    # -k: if it ignores the TERM signal, KILL it 5 s later.
    timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    say "exit status $?: $1 ..."
    collect
}

collect() {
    for f in benchmarks/results/gpu/*.json; do
        [ -e "$f" ] && cp "$f" "$OUT/"
    done
}

export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
say "installing the wheels of .whl/"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 ||
    say "pip install failed"
export PYTHONPATH="/tmp/site:$PWD"

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
step 60 env KERAS_BACKEND=jax python3 -c '
import sys
sys.modules["tensorflow"] = None  # as on this machine: none
sys.modules["tensorflow_text"] = None
import jax, keras, keras_hub, numpy, torch
import keras_attn
print("python", sys.version.split()[0], "| torch", torch.__version__,
      "cuda", torch.version.cuda, torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("jax", jax.__version__, jax.devices(), "| keras", keras.__version__,
      "| keras_hub", keras_hub.__version__, "| numpy", numpy.__version__)
print("keras_attn from", keras_attn.__file__)
'

rm -rf benchmarks/results/gpu
REPORT="python3 benchmarks/make_report.py --device gpu --backends jax torch"
# Attention: one process per backend and length; 6 processes. The first
# make_report run also writes the machine down (GPU, driver, versions).
step 190 $REPORT --only attention_ops
# Generation and training: each backend's script has its own limit (JAX's
# training script, two models compiled, ran past 45 s on an H100).
step 105 $REPORT --only generation --timeout $((50 * SCALE))
step 120 $REPORT --only training --timeout $((70 * SCALE))
# The op against NumPy on the GPU: fused, chunked, auto and reference paths,
# gradients included (JAX at full float32 precision, as the suite).
TESTS="tests/ops/test_attention.py"
step 30 env KERAS_BACKEND=torch python3 -m pytest --maxfail=5 -q \
    -p no:cacheprovider \
    "$TESTS" -k "not 16k and not memory"
step 45 env KERAS_BACKEND=jax JAX_DEFAULT_MATMUL_PRECISION=highest \
    python3 -m pytest --maxfail=5 -q -p no:cacheprovider "$TESTS" \
    -k "causal and (matches_numpy or gradients_match_numpy)"
say "done"
collect
# The tables and test counts, for a quick look at the run's own output.
grep -E '^(\||#|[0-9]+ (passed|failed))|^(ours|keras-hub|torch.nn|  ours)' \
    "$LOG" | cut -c1-400 | tail -120
