#!/usr/bin/env bash
# One prepared GPU check (under 8 minutes) for a lent GPU machine: install genae and pythae from
# carried wheels, run the throughput benchmark on the GPU, and a 1-GPU DDP smoke run (torchrun,
# nccl) plus a resume. Results land in $OUT (or ./gpu-check-out).
#
# Here, before the call:  echo /.whl/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl pythae==0.1.2 pydantic pydantic-core ...
# Device call: carry [".whl"], command: bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv || true
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
export PYTHONUNBUFFERED=1
# Fashion-MNIST travels in the repo only if a user put it under data/; else use digits.
DATA=digits; [ -d data/fashion-mnist ] && DATA=fashion-mnist
timeout 240 python3 -m genae train vae --dataset "$DATA" --data-dir data --device cuda --epochs 3 \
  --hidden 500,500 --latent-dim 16 --batch-size 100 --no-progress --out "$OUT/single" --force
timeout 120 python3 -m torch.distributed.run --standalone --nproc-per-node=1 -m genae train vae \
  --dataset "$DATA" --data-dir data --device cuda --epochs 2 --checkpoint-every 50 --no-progress \
  --out "$OUT/ddp" --force
timeout 120 python3 -m torch.distributed.run --standalone --nproc-per-node=1 -m genae train vae \
  --dataset "$DATA" --data-dir data --device cuda --epochs 3 --checkpoint-every 50 --no-progress \
  --out "$OUT/ddp" --resume
[ "$DATA" = fashion-mnist ] && timeout 200 python3 benchmarks/throughput.py --epochs 3 \
  --json "$OUT/throughput.json"
tail -n 3 "$OUT"/*/metrics.jsonl
