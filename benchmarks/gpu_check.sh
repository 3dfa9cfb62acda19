#!/usr/bin/env bash
# Issue #13's GPU figures in one run, from the repository root on a CUDA machine (about 6 minutes on an H200;
# the steps' limits add up to 835 s, 735 s with SKIP="bench_mem files"):
#   bash benchmarks/gpu_check.sh                          # everything
#   SKIP="bench_mem files" bash benchmarks/gpu_check.sh   # leave steps out by name
#   ONLY="predict_gpu bench_fp16" bash benchmarks/gpu_check.sh   # or run only these
# $OUT (default ./gpu-check-out) gets summary.txt and logs.tar.gz (every step's log and JSON: two files, as the
# device tool brings back only a few). Wheels for packages the machine lacks (pycocotools, platformdirs) are
# installed from .whl/ when present. Each step has its own timeout and a failing step does not stop the others.
set -u
OUT=${OUT:-$PWD/gpu-check-out}
LOGS=$(mktemp -d)
SKIP=" ${SKIP:-} "
ONLY=" ${ONLY:-} "
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
RDET=(${RDET:-$PY -m cli.main})
declare -A STATUS
STEPS=""

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $LOGS/NAME.log, remember the exit status
    local name=$1 limit=$2
    shift 2
    [[ $SKIP == *" $name "* ]] && return
    [[ $ONLY != "  " && $ONLY != *" $name "* ]] && return
    STEPS="$STEPS $name"
    local start=$SECONDS
    echo "=== $name (limit ${limit}s): $*" | tee "$LOGS/$name.log"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    STATUS[$name]="rc=$rc, $((SECONDS - start)) s"
    echo "=== $name: ${STATUS[$name]}" | tee -a "$LOGS/$name.log"
}

{ nvidia-smi -L; $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, torch.cuda.get_device_name(0))"; } >"$LOGS/device.log" 2>&1

step predict_gpu 100 $PY benchmarks/predict_gpu.py --precision fp32,fp16,tf32 --repeats 20 --warmup 8 \
    --json "$LOGS/predict_gpu.json"
step predict_tuned 120 $PY benchmarks/predict_gpu.py --autotune --precision fp32,fp16 --repeats 20 --warmup 8 \
    --json "$LOGS/predict_tuned.json"
step bench_fp16 40 "${RDET[@]}" bench r50_fpn_1x --fps --precision fp16 --random-weights --stages --json
step gpu_tests 90 $PY -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_device_resize.py
step eval_fps 100 $PY benchmarks/eval_fps.py --images 500 --precision fp32,fp16 --workers 8 \
    --json "$LOGS/eval_fps.json"
step eval_fps_w2 60 $PY benchmarks/eval_fps.py --images 500 --precision fp16 --workers 2 \
    --json "$LOGS/eval_fps_w2.json"
step bench_fp16_tuned 45 "${RDET[@]}" bench r50_fpn_1x --fps --precision fp16 --random-weights --autotune --json
step bench_fp32 45 "${RDET[@]}" bench r50_fpn_1x --fps --precision fp32 --random-weights --stages --json \
    --num-images 600
step profile 60 $PY benchmarks/profile_gpu.py --precision fp16,fp32 --variants new --tables --capacities \
    --json "$LOGS/profile.json"
step tf32_cost 35 $PY benchmarks/predict_gpu.py --precision none --tf32-cost 12 --json "$LOGS/tf32_cost.json"
step files 40 $PY benchmarks/predict_gpu.py --precision fp16 --repeats 3 --warmup 2 --files 40 \
    --json "$LOGS/files.json"
step bench_mem 60 "${RDET[@]}" bench r50_fpn_1x r101_fpn_1x x101_64x4d_fpn_1x --mem --random-weights --json

{
    echo "rdet GPU check: $(head -1 "$LOGS/device.log")"
    tail -1 "$LOGS/device.log"
    for name in $STEPS; do
        echo "$name: ${STATUS[$name]:-not run}"
    done
    echo "--- gpu tests"; grep -sE "passed|failed|error" "$LOGS/gpu_tests.log" | tail -3
    echo "--- predict_gpu, cuDNN heuristics (median ms, ratio to torchvision)"
    grep -sE "^(fp32|fp16|tf32)" "$LOGS/predict_gpu.log"
    echo "--- predict_gpu, cuDNN autotuned, rdet and torchvision alike"; grep -sE "^(fp32|fp16)" "$LOGS/predict_tuned.log"
    echo "--- profile (ms)"; grep -sE "^(fp32|fp16) " "$LOGS/profile.log"
    echo "--- tf32 cost"; grep -sE "tf32 cost" "$LOGS/tf32_cost.log"
    echo "--- predict_files, read ahead or not"; grep -sE "^files" "$LOGS/files.log"
    for name in bench_fp16 bench_fp16_tuned bench_fp32 bench_mem; do
        echo "--- $name"
        $PY - "$LOGS/$name.log" <<'EOF'
import json, re, sys
try:
    text = open(sys.argv[1]).read()
except OSError:
    sys.exit(print("not run"))
found = re.search(r'\{\s*"device"', text)
try:
    doc = json.JSONDecoder().raw_decode(text[found.start() if found else len(text):])[0]
    for r in doc["results"]:
        print({k: v for k, v in r.items() if v is not None})
except ValueError:
    print("no JSON in the log")
EOF
    done
    echo "--- eval vs bench (8 loader workers; then 2, rdet eval's default)"
    grep -sE "^(fp32|fp16):" "$LOGS/eval_fps.log" "$LOGS/eval_fps_w2.log"
} >"$OUT/summary.txt" 2>&1
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
cat "$OUT/summary.txt"
