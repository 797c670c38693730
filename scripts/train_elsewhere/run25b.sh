set -u
nvidia-smi --query-gpu=name --format=csv,noheader
python3 .device/r25/unpack.py .device/r25/pack || exit 1
for i in 0 1 2 3; do
  OMP_NUM_THREADS=3 CTROOT=/tmp/rootb$i JOBS_LOG=jobs_$i.jsonl PYTHONUNBUFFERED=1 python3 .device/r25/train.py .device/r25/pack .device/r25/jobs15_$i.json .device/r25/cfg.yaml > /tmp/logb$i.txt 2>&1 &
done
wait
cat $OUT/jobs_*.jsonl > $OUT/jobs.jsonl; rm -f $OUT/jobs_*.jsonl
for i in 0 1 2 3; do grep -v "Warning\|warn(" /tmp/logb$i.txt | tail -1 | cut -c1-300; done
ls $OUT
