#!/usr/bin/env bash
# A file of a million lines through `scripts/predict.py input=...`: streamed in chunks, so
# resident memory stays flat from the first chunk to the last. Samples the process's RSS
# every 10 s; prints and writes the log (default results/predict_stream_1m.log).
#   bash benchmarks/predict_stream.sh CKPT [LINES] [LOG]
# The input repeats the SMS Spam Collection's messages (../shared/data/sms_spam).
set -euo pipefail
ckpt=$1; lines=${2:-1000000}; log=${3:-results/predict_stream_1m.log}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
cut -f2- ../shared/data/sms_spam/SMSSpamCollection | awk -v n="$lines" \
  '{ m[NR] = $0 } END { for (i = 0; i < n; i++) print m[i % NR + 1] }' > "$work/in.txt"
{
  echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo "# python scripts/predict.py ckpt_path=$ckpt input=<$lines lines> output=<file> threads=2"
} | tee "$log"
: > "$work/out.jsonl"  # counted from the first sample on
python3 scripts/predict.py ckpt_path="$ckpt" input="$work/in.txt" output="$work/out.jsonl" \
  threads=2 progress=false &
pid=$!; start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  echo "$(( $(date +%s) - start )) s: $(wc -l < "$work/out.jsonl" 2>/dev/null || echo 0) lines written, RSS ${rss:-?} KB" | tee -a "$log"
  sleep 10
done
wait "$pid"
echo "done: $(wc -l < "$work/out.jsonl") lines in $(( $(date +%s) - start )) s" | tee -a "$log"
rm -rf "$work"
