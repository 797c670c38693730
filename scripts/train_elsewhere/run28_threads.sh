set -u
python3 -c "import os; print('cpus', os.cpu_count())"
python3 .device/g28/unpack.py .device/g28/pack >/dev/null || exit 1
for omp in unset 8 1; do
  if [ $omp = unset ]; then unset OMP_NUM_THREADS; else export OMP_NUM_THREADS=$omp; fi
  CTROOT=/tmp/root_$omp JOBS_LOG=jobs_$omp.jsonl PYTHONUNBUFFERED=1 python3 .device/g28/train.py .device/g28/pack .device/g28/jobs_run28_threads.json .device/g28/cfg.yaml > $OUT/log_$omp.txt 2>&1
  echo "omp=$omp $(cut -c1-200 $OUT/jobs_$omp.jsonl)"
done
