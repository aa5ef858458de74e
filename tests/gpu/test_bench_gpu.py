"""The GPU benchmark runs end to end (tiny shapes; on the simulator its figures mean nothing)."""

import json

from bench import bench_gpu
from tierstore.torch.interop import torchrec_module


def test_bench_gpu_runs_and_its_outputs_agree(tmp_path, capsys):
    dlrm = int(torchrec_module() is not None)
    assert bench_gpu.main(["--rows", "2000", "--dim", "8", "--bags", "6", "--pooling", "3", "--batches", "2",
                           "--repeats", "1", "--warm-batches", "2", "--dlrm", str(dlrm), "--dlrm-max-rows", "100",
                           "--dlrm-batch-size", "4", "--dlrm-batches", "1", "--workdir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["cases"]) == set(bench_gpu.CASES)
    assert max(result["max_abs_diff_vs_torch"].values()) < 1e-5
    assert result["gpu_tier"]["all-gpu"]["gpu"]["misses"] == 0
    if dlrm:
        assert result["dlrm"]["max_abs_logit_diff"] < 1e-5 and "gpu" in result["dlrm"]["cases"]
