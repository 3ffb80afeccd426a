"""Local study workers dealt round the GPUs: one each while there are enough, several to a
GPU beyond that, each then given an even slice of its memory (JAX would take 75% per process)."""

from __future__ import annotations

from harness.study.workers import GPU_MEMORY_FOR_WORKERS, placements


def test_no_gpu_no_pinning():
    assert [p.env for p in placements(3, [])] == [{}, {}, {}]
    assert placements(1, [])[0].describe() == ""


def test_one_worker_per_gpu_takes_the_gpu_whole():
    placed = placements(2, ["0", "1"])
    assert [p.env for p in placed] == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    assert placed[1].describe() == " on GPU 1"


def test_workers_beyond_the_gpus_share_them_with_even_memory_slices():
    placed = placements(4, ["0"])
    assert {p.env["CUDA_VISIBLE_DEVICES"] for p in placed} == {"0"}
    fractions = [float(p.env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) for p in placed]
    assert fractions == [0.22] * 4 and sum(fractions) <= GPU_MEMORY_FOR_WORKERS
    assert all(p.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for p in placed)
    assert placed[0].describe() == " on GPU 0 (shared by 4: 0.22 of its memory)"


def test_uneven_sharing_slices_each_gpu_by_its_own_count():
    placed = placements(3, ["0", "1"])  # GPU 0 gets workers 1 and 3, GPU 1 worker 2 alone
    assert [p.gpu for p in placed] == ["0", "1", "0"]
    assert placed[0].env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.45"
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in placed[1].env
