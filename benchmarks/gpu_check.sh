#!/usr/bin/env bash
# What a short loan of a GPU checks, in one run from the repository root: the CUDA tests (the
# loops replayed from CUDA graphs, the fused steps, every cell against cuDNN), the training-step
# grid against cuDNN (benchmarks/gpu_speed.py), and experiment=ptb_lstm_medium.
#
#   bash benchmarks/gpu_check.sh [max_time]     # e.g. 00:00:09:30 (the experiment's own)
#
# Offline machines: the Python packages torch's image lacks as wheels in .whl/ and PTB in
# .gpu/ptb (both ignored by git; benchmarks/README.md says how they are made). Logs and the
# results go to $OUT (default outputs/gpu_check). Each part has a time limit of its own, so a
# failure in one still leaves the others' figures.
set -uo pipefail
OUT=${OUT:-outputs/gpu_check}
MAX_TIME=${1:-00:00:09:30}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    if ! python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)"; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/pyarrow-*.whl
    fi
    export PYTHONPATH=$PWD:/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.used,clocks.sm --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

echo "== CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider -k cuda \
    tests/test_nn_graphs.py tests/test_nn_fused.py tests/test_nn_torch_equivalence.py \
    > "$OUT/tests.log" 2>&1
echo "rc=$?"; tail -n 25 "$OUT/tests.log"

echo "== training step against cuDNN"
timeout 170 python3 benchmarks/gpu_speed.py --out "$OUT/gpu_speed.json" > "$OUT/gpu_speed.log" 2>&1
echo "rc=$?"; tail -n 40 "$OUT/gpu_speed.log"

echo "== experiment=ptb_lstm_medium (max_time $MAX_TIME)"
RUN=/tmp/ptb_lstm_medium
timeout 620 python3 scripts/train.py experiment=ptb_lstm_medium data.path=.gpu/ptb \
    trainer.max_time="$MAX_TIME" trainer.enable_progress_bar=false hydra.run.dir=$RUN \
    results="$OUT/ptb_lstm_medium.json" > "$OUT/train.log" 2>&1
echo "rc=$?"; grep -E "val/ppl|test/ppl|tokens|Epoch|rror" "$OUT/train.log" | tail -n 30
cp "$RUN/metrics.csv" "$OUT/" 2>/dev/null || ls "$RUN"
