"""benchmarks/gpu_check.py --dry-run lists what it would measure on a GPU, here where there is none."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def test_dry_run_lists_every_measurement_and_runs_nothing(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 * (3 + 4)  # two recipes; cuda: fp32, fp16, int8; tensorrt: fp32, fp32 + its fp16 flag, fp16, int8
    assert lines[0].startswith("convnet: fp32 on cuda, batches [1, 32]") and "IO binding" in lines[0]
    assert "lite0_imagenet: int8.sym on tensorrt trt_int8=True" in done.stdout
    assert "convnet: fp32 on tensorrt trt_fp16=True" in done.stdout
    assert not any(tmp_path.iterdir())  # nothing trained, exported or written
