#!/bin/sh
# A GPU command job: it reports the GPU(s) the worker gave it (CUDA_VISIBLE_DEVICES) and, where
# PyTorch is installed, multiplies two matrices on them; on a worker without a GPU it says so.
#
#   starter submit command --gpus 1 --device 'gpu!' -- sh gpu.sh
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-<none>}"
if command -v nvidia-smi >/dev/null 2>&1 && [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
	nvidia-smi --query-gpu=index,name,memory.total,utilization.gpu --format=csv -i "$CUDA_VISIBLE_DEVICES"
else
	echo "no nvidia-smi here, or no GPU given to this job"
fi
if command -v python3 >/dev/null 2>&1 && python3 -c 'import torch' 2>/dev/null; then
	python3 - <<'PY'
import time, torch
if not torch.cuda.is_available():
    print("torch sees no CUDA device"); raise SystemExit(0)
a = torch.randn(8192, 8192, device="cuda"); b = torch.randn_like(a)
torch.cuda.synchronize(); t = time.time()
for _ in range(10): c = a @ b
torch.cuda.synchronize(); dt = time.time() - t
print(f"{torch.cuda.get_device_name()}: {10 * 2 * 8192**3 / dt / 1e12:.1f} TFLOP/s fp32 matmul")
print("GPUJOBS_PROGRESS 1")
PY
fi
