set -u
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 .device/unpack.py .device/pack || exit 1
CTROOT=/tmp/root24 PYTHONUNBUFFERED=1 python3 .device/train.py .device/pack .device/jobs24.json .device/cfg24.yaml > $OUT/log24.txt 2>&1
grep -v "Warning\|warn(" $OUT/log24.txt | tail -6
cat $OUT/jobs.jsonl
