#!/usr/bin/env bash
# Kernel engines on one GPU, in one command (see README.md beside this file):
#   0. device_tests: tests/test_device.py (every engine's kernels on the GPU equal the CPU's in float64, the
#      model left as it was);
#   1. RoBERTa-base shape, float32, n=32, T=512, 36 q/k/v candidates, output trace: the floor (one forward +
#      backward), the 2-backward floor, func and hooks at chunk 8 and 32, and the reference engine and the
#      authors' jacrev baseline at n=2 (scaled to n);
#   2. Llama shape (hidden 2048, 16 layers, 32 heads, 8 kv heads, intermediate 5632, vocab 32000: 0.79B
#      parameters), bfloat16, n=32, T=512, 48 candidates: the same rows;
#   3. Llama-2-7B shape (hidden 4096, 32 layers, 32 heads, intermediate 11008, vocab 32000: 6.7B parameters,
#      about 13.5 GB), bfloat16, n=32, T=512, every linear module a candidate (224), space: the LoRA parameters
#      of PEFT's default placement (q,v at r=8), max_memory 40GB: floor, func, and the whole select (time,
#      search time, the memory plan's estimate against the measured peak);
#   4, 5. profile_func, profile_hooks: one kernel pass of the RoBERTa-base shape under torch.profiler (where each
#      engine's time goes: the model's matmuls against the probes' extra work);
#   6, 7. only if time is left: the first two models with output margin (one backward), floor, func, hooks.
# Steps 1 and 2 also time the whole select (data to LoraConfig) beside the kernel pass.
# Rows run one after another (--order sequential): the GPU holds one row's working memory at a time.
# Every step runs under `timeout`, inside an overall budget (GPU_BENCH_BUDGET_S, default 330 s).
# Results: $OUT/gpu_bench.log (everything), $OUT/summary.txt (tables), $OUT/<step>.json (bench_kernels --json).
# GPU_BENCH_SMOKE=1: tiny sizes on the CPU, to check the whole path anywhere. GPU_BENCH_STEPS=a,b runs only
# those steps (the test suite's dry run: roberta_fp32,llama7b_select). GPU_BENCH_PYTHON picks the
# interpreter [python3; smoke: .venv/bin/python if present]. Nothing outside the repo is needed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SMOKE=${GPU_BENCH_SMOKE:-0}
if [[ $SMOKE == 1 ]]; then DEFAULT_BUDGET=600; else DEFAULT_BUDGET=480; fi
BUDGET=${GPU_BENCH_BUDGET_S:-$DEFAULT_BUDGET}
if [[ -n ${GPU_BENCH_PYTHON:-} ]]; then
    PY=$GPU_BENCH_PYTHON
elif [[ $SMOKE == 1 && -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=python3
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONWARNINGS=ignore

BENCH=(benchmarks/bench_kernels.py)
COMMON=(--labels 2 --rank 8 --reference-n 2 --baseline-n 2)
if [[ $SMOKE == 1 ]]; then
    DEVICE=cpu
    # tiny shapes; one warm-up and one timed round; one torch thread per worker
    ROBERTA=(--arch roberta --dtype float32 --layers 2 --hidden 64 --heads 4 --intermediate 128 --vocab 1000)
    LLAMA=(--arch llama --dtype bfloat16 --layers 2 --hidden 64 --heads 4 --kv-heads 2 --intermediate 128
        --vocab 1000)
    LLAMA7B=(--arch llama --dtype bfloat16 --layers 2 --hidden 64 --heads 4 --kv-heads 4 --intermediate 176
        --vocab 1000)
    SIZE=(--n 4 --length 16 --repeats 1 --warmup 0 --threads 1 --order sequential)
    PROFILE_SIZE=(--n 4 --length 16 --threads 1 --chunk-size 2)
    CHUNKS=2
    ENGINES=func,hooks,select
    MAX_MEMORY=1GB
    TEST_DEVICE=cpu # the device tests then compare two CPU copies: a check of the step itself
    COMMON+=(--no-floor-c)
else
    DEVICE=cuda
    ROBERTA=(--arch roberta --dtype float32 --layers 12 --hidden 768 --heads 12 --intermediate 3072 --vocab 50265)
    LLAMA=(--arch llama --dtype bfloat16 --layers 16 --hidden 2048 --heads 32 --kv-heads 8 --intermediate 5632
        --vocab 32000)
    # 2 CPU threads per worker: up to 8 workers build their models at once on 16 cores
    LLAMA7B=(--arch llama --dtype bfloat16 --layers 32 --hidden 4096 --heads 32 --kv-heads 32 --intermediate 11008
        --vocab 32000)
    SIZE=(--n 32 --length 512 --repeats 3 --warmup 1 --threads 2 --order sequential)
    PROFILE_SIZE=(--n 32 --length 512 --chunk-size 8)
    CHUNKS=8,32
    ENGINES=func,hooks,reference,baseline,select
    MAX_MEMORY=40GB
    TEST_DEVICE=cuda
fi
SIZE_7B=("${SIZE[@]}" --repeats 1 --warmup 0) # one timed run of each 7B row (the last flag wins)

START=$SECONDS
STATUS=()

step() { # step NAME LIMIT_S MIN_S COMMAND...: run COMMAND under timeout, within what is left of the budget
    local name=$1 limit=$2 min=$3
    shift 3
    if [[ -n ${GPU_BENCH_STEPS:-} && ,$GPU_BENCH_STEPS, != *",$name,"* ]]; then
        STATUS+=("$name: not asked (GPU_BENCH_STEPS)")
        return 0
    fi
    local left=$((BUDGET - (SECONDS - START) - 5))
    if ((left < min)); then
        echo "=== SKIPPED $name: ${left} s of the ${BUDGET} s budget left, it needs at least ${min} s"
        STATUS+=("$name: skipped (budget)")
        return 0
    fi
    ((limit > left)) && limit=$left
    echo
    echo "=== $name: limit ${limit} s ($((SECONDS - START)) s elapsed of ${BUDGET} s) $(date -u +%H:%M:%S) UTC"
    echo "+ $*"
    local t0=$SECONDS rc=0 report
    report=$(mktemp)
    timeout -k 10 "$limit" "$@" >"$report" || rc=$?
    local took=$((SECONDS - t0)) verdict="ok"
    if ((rc == 124 || rc == 137)); then
        verdict="TIMED OUT after ${limit} s (rc $rc)"
    elif ((rc != 0)); then
        verdict="FAILED (rc $rc)"
    fi
    cat "$report"
    {
        echo "=== $name: $verdict, ${took} s"
        echo "+ $*"
        cat "$report"
        echo
    } >>"$OUT/summary.txt"
    rm -f "$report"
    echo "=== $name: $verdict, ${took} s"
    STATUS+=("$name: $verdict, ${took} s")
}

main() {
    echo "run_gpu_bench.sh: smoke=$SMOKE device=$DEVICE budget=${BUDGET} s python=$PY out=$OUT"
    echo "repo $REPO, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(git status --porcelain 2>/dev/null | wc -l | tr -d ' ') changed file(s); $(date -u +%FT%TZ)"
    : >"$OUT/summary.txt"
    echo "=== nvidia-smi"
    if command -v nvidia-smi >/dev/null; then
        timeout 30 nvidia-smi || echo "nvidia-smi failed (rc $?)"
    else
        echo "nvidia-smi: not found"
    fi
    echo "=== CPUs $(nproc), memory $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "=== Python environment"
    local check_rc=0
    local cpu_ok=()
    [[ $SMOKE == 1 ]] && cpu_ok=(--cpu-ok)
    timeout -k 5 120 "$PY" benchmarks/gpu/helpers.py check "${cpu_ok[@]}" || check_rc=$?
    if ((check_rc != 0)); then
        echo "ABORT: the environment check failed (rc $check_rc): see the lines above; no benchmark was run"
        return "$check_rc"
    fi

    # the engines on the device against the CPU in float64, and the model left as it was (tests/test_device.py)
    step device_tests 60 30 env NTK_TEST_DEVICE="$TEST_DEVICE" "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py
    step roberta_fp32 100 60 "$PY" "${BENCH[@]}" "${ROBERTA[@]}" "${SIZE[@]}" "${COMMON[@]}" \
        --output trace --engines "$ENGINES" --chunk-sizes "$CHUNKS" --device "$DEVICE" \
        --json "$OUT/roberta_fp32.json"
    step llama_bf16 110 80 "$PY" "${BENCH[@]}" "${LLAMA[@]}" "${SIZE[@]}" "${COMMON[@]}" \
        --output trace --engines "$ENGINES" --chunk-sizes "$CHUNKS" --device "$DEVICE" \
        --json "$OUT/llama_bf16.json"
    step llama7b_select 150 90 "$PY" "${BENCH[@]}" "${LLAMA7B[@]}" "${SIZE_7B[@]}" "${COMMON[@]}" --no-floor-c \
        --output trace --engines func,select --chunk-sizes 2 --kinds all-linear --param-budget q,v \
        --max-memory "$MAX_MEMORY" --time-limit 30 --device "$DEVICE" --json "$OUT/llama7b_select.json"
    # where each engine's time goes on the RoBERTa-base shape (torch profiler; CUDA time on the GPU)
    for engine in func hooks; do
        step "profile_$engine" 35 25 "$PY" benchmarks/profile_kernels.py "${ROBERTA[@]}" "${PROFILE_SIZE[@]}" \
            --engine "$engine" --device "$DEVICE" --json "$OUT/profile_$engine.json"
    done
    # optional, if time is left: one backward per sample (output margin), where on CPU the engines met 1.3x
    step roberta_fp32_margin 60 45 "$PY" "${BENCH[@]}" "${ROBERTA[@]}" "${SIZE[@]}" "${COMMON[@]}" \
        --output margin --engines func,hooks --chunk-sizes 8 --device "$DEVICE" --json "$OUT/roberta_fp32_margin.json"
    step llama_bf16_margin 75 55 "$PY" "${BENCH[@]}" "${LLAMA[@]}" "${SIZE[@]}" "${COMMON[@]}" \
        --output margin --engines func,hooks --chunk-sizes 8 --device "$DEVICE" --json "$OUT/llama_bf16_margin.json"

    echo
    echo "=== recap (wall: median of the timed runs; x floor: to one forward + backward; peak: max_memory_allocated"
    echo "    above the model on CUDA, RSS on CPU)"
    timeout 60 "$PY" benchmarks/gpu/helpers.py recap "$OUT" | tee -a "$OUT/summary.txt" || true
    echo "=== steps:"
    printf '  %s\n' "${STATUS[@]}"
    echo "=== total $((SECONDS - START)) s; results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
}

set -o pipefail
main 2>&1 | tee "$OUT/gpu_bench.log"
