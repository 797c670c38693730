set -u
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 .device/r25/unpack.py .device/r25/pack || exit 1
for i in 0 1 2 3 4; do
  OMP_NUM_THREADS=3 CTROOT=/tmp/root$i JOBS_LOG=jobs_$i.jsonl PYTHONUNBUFFERED=1 python3 .device/r25/train.py .device/r25/pack .device/r25/jobs_$i.json .device/r25/cfg.yaml > $OUT/log$i.txt 2>&1 &
done
wait
cat $OUT/jobs_*.jsonl > $OUT/jobs.jsonl 2>/dev/null
for i in 0 1 2 3 4; do grep -v "Warning\|warn(" $OUT/log$i.txt | tail -2 | cut -c1-400; done
ls -la $OUT
