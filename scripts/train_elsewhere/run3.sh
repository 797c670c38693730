set -u
python3 .device/unpack.py .device/pack || exit 1
CTROOT=/tmp/rootb JOBS_LOG=jobs_b.jsonl PYTHONUNBUFFERED=1 python3 .device/train.py .device/pack .device/jobs3_base.json .device/cfg.yaml > /tmp/logb 2>&1
grep -v "Warning\|warn(" /tmp/logb | tail -3
for i in 0 1 2; do
  sed -i "s#OUTBASE#$OUT/base2.safetensors#" .device/jobs3_$i.json
  CTROOT=/tmp/root$i JOBS_LOG=jobs_$i.jsonl PYTHONUNBUFFERED=1 python3 .device/train.py .device/pack .device/jobs3_$i.json .device/cfg.yaml > /tmp/log$i 2>&1 &
done
wait
cat $OUT/jobs_*.jsonl > $OUT/jobs.jsonl; rm $OUT/jobs_*.jsonl
for i in 0 1 2; do grep -v "Warning\|warn(" /tmp/log$i | tail -2; done
