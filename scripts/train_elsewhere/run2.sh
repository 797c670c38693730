set -u
python3 .device/unpack.py .device/pack || exit 1
for i in 0 1 2 3; do
  CTROOT=/tmp/root$i JOBS_LOG=jobs_$i.jsonl PYTHONUNBUFFERED=1 python3 .device/train.py .device/pack .device/jobs2_$i.json .device/cfg.yaml > /tmp/log$i 2>&1 &
done
wait
cat $OUT/jobs_*.jsonl > $OUT/jobs.jsonl; rm $OUT/jobs_*.jsonl
for i in 0 1 2 3; do grep -v "Warning\|warn(" /tmp/log$i | tail -4; done
