set -u
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'lightning', lightning.__version__)"
git log --oneline -1 2>/dev/null || true
python3 .device/g28/unpack.py .device/g28/pack || exit 1
CTROOT=/tmp/rootg OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1 python3 .device/g28/train.py .device/g28/pack .device/g28/jobs_run28.json .device/g28/cfg.yaml > $OUT/log.txt 2>&1
echo rc=$?
grep -v "Warning\|warn(" $OUT/log.txt | tail -8 | cut -c1-600
cat $OUT/jobs.jsonl
