#!/usr/bin/env bash
# One GPU check (under 8 minutes on the lent H200) on Keras' JAX backend. From the repository
# root, on the machine as it is (Python 3.12, JAX with CUDA; no Keras, no TensorFlow, no
# package registry), with the wheels of bench/fetch_device_wheels.sh carried in .whl/:
#
#     bash bench/device_check.sh [OUT_DIR]        # see bench/README.md for the device call
#
# Prints one JSON object (also written to OUT_DIR/device_check.json; default $OUT, else .):
#   detect_resnet50, detect_resnet101: detect() ms per image at 1024 px, float32 and
#       bfloat16, batch 1 and 8 (random weights, 100 detections: the mask head on every slot);
#   train_resnet50: training images/s at 1024 px, all layers, batch 2 and 8, float32 and
#       bfloat16 (train_on_batch on a fixed batch, median step);
#   shapes: samples/shapes.py's training job, wall time until the held-out mask mAP@0.5
#       reaches 0.95 (evaluated after each epoch; stops at the target or its time budget).
# Each part is one process (bench/device_parts.py) under its own time limit; a setting that
# fails or is not reached in time reads {"error": ...} and the other parts still run.
#
# Keras is installed from .whl/ only when `$PYTHON -c 'import keras'` fails (the GPU
# machine); elsewhere the installed one is used. Knobs (environment):
#   PYTHON                      interpreter (default python3)
#   DEVICE_CHECK_TINY=1         tiny models and runs, for the CPU test (tests/test_device_check.py)
#   DEVICE_CHECK_IMAGE_SIZE     px (default 1024; tiny: 64)
#   DEVICE_CHECK_PRECISIONS     default float32,bfloat16
#   DEVICE_CHECK_DETECT_BATCHES default 1,8;  DEVICE_CHECK_TRAIN_BATCHES default 2,8
#   DEVICE_CHECK_SHAPES_TARGET  mask mAP@0.5 to reach (default 0.95; tiny: 0)
#   DEVICE_CHECK_LIMITS         seconds per part: detect50,detect101,train,shapes
#                               (default 75,85,125,185)
#   DEVICE_CHECK_PARTS          the parts to run (default all four:
#                               detect_resnet50,detect_resnet101,train_resnet50,shapes);
#                               the others read {"skipped": true}
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT_DIR="${1:-${OUT:-.}}"
mkdir -p "$OUT_DIR"
PYTHON="${PYTHON:-python3}"
export KERAS_BACKEND="${KERAS_BACKEND:-jax}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

if ! "$PYTHON" -c 'import keras' 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo '{"benchmark": "device_check", "error": "no Keras here and no .whl/ (run bench/fetch_device_wheels.sh, carry .whl)"}'
        exit 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo '{"benchmark": "device_check", "error": "wheel install failed"}'; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

TINY="${DEVICE_CHECK_TINY:-0}"
if [ "$TINY" = 1 ]; then
    SIZE="${DEVICE_CHECK_IMAGE_SIZE:-64}"; TARGET="${DEVICE_CHECK_SHAPES_TARGET:-0}"
    RUNS=(--runs 1 --warmup 1); STEPS=(--steps 1 --warmup 1); TINY_FLAG=(--tiny)
else
    SIZE="${DEVICE_CHECK_IMAGE_SIZE:-1024}"; TARGET="${DEVICE_CHECK_SHAPES_TARGET:-0.95}"
    RUNS=(--runs 5 --warmup 2); STEPS=(--steps 10 --warmup 3); TINY_FLAG=()
fi
PRECISIONS="${DEVICE_CHECK_PRECISIONS:-float32,bfloat16}"
DETECT_BATCHES="${DEVICE_CHECK_DETECT_BATCHES:-1,8}"
TRAIN_BATCHES="${DEVICE_CHECK_TRAIN_BATCHES:-2,8}"
IFS=, read -r LIMIT_D50 LIMIT_D101 LIMIT_TRAIN LIMIT_SHAPES <<<"${DEVICE_CHECK_LIMITS:-75,85,125,185}"
# The shapes job stops starting epochs 20 s before its limit (its last evaluation and the
# report must fit).
SHAPES_BUDGET=$(( LIMIT_SHAPES > 40 ? LIMIT_SHAPES - 20 : LIMIT_SHAPES / 2 ))

# The parts' lines and logs stay out of OUT_DIR (the device returns at most 8 files from
# $OUT); OUT_DIR gets device_check.json and device_check.log (every part's stderr tail).
PARTS=$(mktemp -d /tmp/device_check.XXXXXX)
if [ "$TINY" = 1 ]; then
    # The tiny parts compile the same small graphs: share the compilations between them.
    export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$PARTS/jax_cache}"
fi

PARTS_TO_RUN=",${DEVICE_CHECK_PARTS:-detect_resnet50,detect_resnet101,train_resnet50,shapes},"

run_part() {  # name, time limit (s), device_parts.py arguments...
    local name=$1 limit=$2; shift 2
    if [[ "$PARTS_TO_RUN" != *",$name,"* ]]; then
        echo "skipped" >"$PARTS/$name.status"
        return
    fi
    local began=$(date +%s)
    timeout "$limit" "$PYTHON" bench/device_parts.py "$@" --out "$PARTS/$name.jsonl" \
        >"$PARTS/$name.out" 2>"$PARTS/$name.err"
    echo "$? $limit $(( $(date +%s) - began ))" >"$PARTS/$name.status"
}

run_part detect_resnet50 "$LIMIT_D50" detect --backbone resnet50 --image-size "$SIZE" \
    --precisions "$PRECISIONS" --batches "$DETECT_BATCHES" "${RUNS[@]}" "${TINY_FLAG[@]}"
run_part detect_resnet101 "$LIMIT_D101" detect --backbone resnet101 --image-size "$SIZE" \
    --precisions "$PRECISIONS" --batches "$DETECT_BATCHES" "${RUNS[@]}" "${TINY_FLAG[@]}"
run_part train_resnet50 "$LIMIT_TRAIN" train --backbone resnet50 --image-size "$SIZE" \
    --precisions "$PRECISIONS" --batches "$TRAIN_BATCHES" "${STEPS[@]}" "${TINY_FLAG[@]}"
run_part shapes "$LIMIT_SHAPES" shapes --budget "$SHAPES_BUDGET" --target "$TARGET" "${TINY_FLAG[@]}"

for name in detect_resnet50 detect_resnet101 train_resnet50 shapes; do
    echo "=== $name (exit code, limit s, took s: $(cat "$PARTS/$name.status"))"
    [ -f "$PARTS/$name.err" ] && tail -c 4000 "$PARTS/$name.err"
done >"$OUT_DIR/device_check.log" 2>&1

"$PYTHON" - "$PARTS" "$OUT_DIR/device_check.json" "$PRECISIONS" "$DETECT_BATCHES" \
    "$TRAIN_BATCHES" "$TINY" "$START" <<'PY'
import json, os, subprocess, sys, time
parts, out, precisions, detect_batches, train_batches, tiny, start = sys.argv[1:]


def records(name):
    """The part's lines by key (the last line of a key wins), and its exit status."""
    found = {}
    try:
        with open(os.path.join(parts, name + ".jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                found[record.pop("key", "?")] = record
    except OSError:
        pass
    try:
        rc, limit, took = open(os.path.join(parts, name + ".status")).read().split()
    except (OSError, ValueError):
        rc, limit, took = "?", "?", "?"
    return found, rc, limit, took


def stopped(name, rc, limit):
    text = (f"the part exited with code {rc}" +
            (f" (over its {limit} s limit)" if rc in ("124", "137") else ""))
    try:
        with open(os.path.join(parts, name + ".err"), encoding="utf-8", errors="replace") as f:
            tail = f.read()[-600:]
    except OSError:
        tail = ""
    return {"error": text, "stderr_tail": tail}


def skipped(name):
    try:
        return open(os.path.join(parts, name + ".status")).read().strip() == "skipped"
    except OSError:
        return False


def settings_part(name, batches):
    if skipped(name):
        return {"skipped": True}
    found, rc, limit, took = records(name)
    result = {}
    for precision in precisions.split(","):
        for batch in batches.split(","):
            key = f"{precision}_batch{batch}"
            if key in found:
                result[key] = found[key]
            elif rc == "0":
                result[key] = {"error": "not measured (no line from the part)"}
            else:
                result[key] = stopped(name, rc, limit)
    result["part_s"] = int(took) if took.isdigit() else None
    return result


def shapes_part():
    if skipped("shapes"):
        return {"skipped": True}
    found, rc, limit, took = records("shapes")
    if "shapes" not in found:
        return stopped("shapes", rc, limit)
    result = found["shapes"]
    if rc != "0" or not result.get("finished"):
        result.update(stopped("shapes", rc, limit))
    result["part_s"] = int(took) if took.isdigit() else None
    return result


def facts():
    try:
        code = ("import json, jax, keras; print(json.dumps({'keras': keras.__version__, "
                "'jax': jax.__version__, 'backend': keras.backend.backend(), "
                "'devices': [str(d) for d in jax.devices()]}))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        return {"facts_error": str(err)}


try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"], capture_output=True, text=True,
                         timeout=20).stdout.strip() or None
except (OSError, subprocess.SubprocessError):
    smi = None
result = {"benchmark": "device_check", "tiny": tiny == "1", **facts(), "nvidia_smi": smi,
          "python": sys.version.split()[0],
          "detect_resnet50": settings_part("detect_resnet50", detect_batches),
          "detect_resnet101": settings_part("detect_resnet101", detect_batches),
          "train_resnet50": settings_part("train_resnet50", train_batches),
          "shapes": shapes_part()}
result["wall_s"] = round(time.time() - int(start), 1)
text = json.dumps(result, indent=2)
with open(out, "w", encoding="utf-8") as f:
    f.write(text + "\n")
print(text)
PY
rc=$?
rm -rf "$PARTS"
exit $rc
