#!/usr/bin/env bash
# Issue #13's GPU figures in one run, from the repository root on a CUDA machine (about 6 minutes on an H100;
# the steps' limits add up to 570 s):
#   bash benchmarks/gpu_check.sh            # logs and JSON under $OUT (default ./gpu-check-out)
# Wheels for packages the machine lacks (pycocotools, platformdirs) are installed from .whl/ when present.
# Each step has its own timeout and a failing step does not stop the others; summary.txt is written last.
set -u
OUT=${OUT:-$PWD/gpu-check-out}
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

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $OUT/NAME.log, remember the exit status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "=== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    STATUS[$name]="rc=$rc, $((SECONDS - start)) s"
    echo "=== $name: ${STATUS[$name]}" | tee -a "$OUT/$name.log"
}

{ nvidia-smi -L; $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, torch.cuda.get_device_name(0))"; } >"$OUT/device.log" 2>&1

step gpu_tests 100 $PY -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_device_resize.py
step predict_gpu 120 $PY benchmarks/predict_gpu.py --precision fp32,fp16,tf32 --repeats 20 --warmup 8 \
    --json "$OUT/predict_gpu.json"
step tf32_cost 60 $PY benchmarks/predict_gpu.py --precision none --tf32-cost 12 --json "$OUT/tf32_cost.json"
step files 40 $PY benchmarks/predict_gpu.py --precision fp16 --repeats 3 --warmup 2 --files 40 \
    --json "$OUT/files.json"
step bench_fp16 50 "${RDET[@]}" bench r50_fpn_1x --fps --precision fp16 --random-weights --stages --json
step bench_fp32 60 "${RDET[@]}" bench r50_fpn_1x --fps --precision fp32 --random-weights --stages --json
step eval_fps 80 $PY benchmarks/eval_fps.py --images 300 --precision fp32,fp16 --workers 8 --json "$OUT/eval_fps.json"
step bench_mem 60 "${RDET[@]}" bench r50_fpn_1x r101_fpn_1x x101_64x4d_fpn_1x --mem --random-weights --json

{
    echo "rdet GPU check: $(head -1 "$OUT/device.log")"
    tail -1 "$OUT/device.log"
    for name in gpu_tests predict_gpu tf32_cost files bench_fp16 bench_fp32 eval_fps bench_mem; do
        echo "$name: ${STATUS[$name]:-not run}"
    done
    echo "--- gpu tests"; grep -E "passed|failed|error" "$OUT/gpu_tests.log" | tail -3
    echo "--- predict_gpu (median ms, ratio to torchvision)"; grep -E "^(fp32|fp16|tf32)" "$OUT/predict_gpu.log"
    echo "--- tf32 cost"; grep -E "tf32 cost" "$OUT/tf32_cost.log"
    echo "--- predict_files, read ahead or not"; grep -E "^files" "$OUT/files.log"
    for name in bench_fp16 bench_fp32 bench_mem; do
        echo "--- $name"
        $PY - "$OUT/$name.log" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
found = re.search(r'\{\s*"device"', text)
try:
    doc = json.JSONDecoder().raw_decode(text[found.start() if found else len(text):])[0]
    for r in doc["results"]:
        print({k: v for k, v in r.items() if v is not None})
except ValueError:
    print("no JSON in the log")
EOF
    done
    echo "--- eval vs bench"; grep -E "^(fp32|fp16):" "$OUT/eval_fps.log"
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
