#!/usr/bin/env bash
# One short GPU check (under 8 minutes on one modern GPU) for a session that is lent a GPU
# machine. Run from the repository root:   bash bench/device_check.sh [OUT_DIR]
#
# Prints one JSON object (and writes it to OUT_DIR/device_check.json, default $OUT or .):
#   - detect() latency, ResNet-101, 1024 px, batch 1, random weights, 100 detections:
#     float32 and mixed_float16 (bench/infer.py, median of 5 runs after 2 warm-up runs);
#   - training images/s, ResNet-50, 1024 px, 2 images per GPU, all layers, tf.data
#     pipeline, MirroredStrategy over every visible GPU: float32 and mixed_float16 with
#     loss scaling (bench/train.py --fit, median step after 3 warm-up steps).
# Each part has its own time limit; a part that fails or runs out of time is reported as
# {"error": ...} and the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-.}}"
mkdir -p "$OUT_DIR"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
GPUS=$(python -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null || echo 0)
LOGS="$OUT_DIR/device_check_logs"
mkdir -p "$LOGS"

run_part() {  # name, time limit (s), command...
    local name=$1 limit=$2; shift 2
    if timeout "$limit" "$@" >"$LOGS/$name.json" 2>"$LOGS/$name.err"; then
        # the JSON object is the command's last output (bench scripts print only it)
        python - "$LOGS/$name.json" <<'PY' || echo "{\"error\": \"no JSON output\"}" >"$LOGS/$name.json"
import json, sys
text = open(sys.argv[1]).read()
json.loads(text[text.index("{"):])
PY
    else
        local rc=$?
        echo "{\"error\": \"exit code $rc (124: over ${limit} s)\", \"stderr_tail\": $(tail -c 600 "$LOGS/$name.err" | python -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >"$LOGS/$name.json"
    fi
}

run_part detect_fp32 80  python bench/infer.py --backbone resnet101 --image-size 1024 --batch 1 --precision float32 --runs 5 --warmup 2 --no-baseline
run_part detect_fp16 80  python bench/infer.py --backbone resnet101 --image-size 1024 --batch 1 --precision float16 --runs 5 --warmup 2 --no-baseline
COUNT=$(( GPUS > 0 ? GPUS : 1 ))
run_part train_fp32 140 python bench/train.py --fit tf.data --gpu-count "$COUNT" --backbone resnet50 --image-size 1024 --batch 2 --layers all --precision float32 --steps 10 --warmup 3 --workers 8 --images 64
run_part train_fp16 140 python bench/train.py --fit tf.data --gpu-count "$COUNT" --backbone resnet50 --image-size 1024 --batch 2 --layers all --precision float16 --steps 10 --warmup 3 --workers 8 --images 64

python - "$LOGS" "$GPUS" "$OUT_DIR/device_check.json" <<'PY'
import json, os, subprocess, sys
logs, gpus, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def part(name):
    text = open(os.path.join(logs, name + ".json")).read()
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        return {"error": "unreadable output", "text": text[-400:]}
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    smi = None
result = {"benchmark": "device_check", "gpus": gpus, "nvidia_smi": smi,
          "detect_fp32": part("detect_fp32"), "detect_fp16": part("detect_fp16"),
          "train_fp32": part("train_fp32"), "train_fp16": part("train_fp16")}
text = json.dumps(result, indent=2)
open(out, "w").write(text)
print(text)
PY
