"""Data-parallel training (--distributed): sharding of the shared plans, equivalence of
2 ranks x batch B with 1 process x batch 2B in both frameworks, and a dead or hung rank
ending the whole run with a non-zero status within 60 s. Loopback (127.0.0.1) only;
every launch runs under a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mlx_rnn.core import batching, distributed
from mlx_rnn.core.batching import classify_batches, lm_streams
from mlx_rnn.tools.bench.scaling import free_ports
from mlx_rnn.tools.launch import exit_status
from tests.conftest import ROOT

WORKER = str(ROOT / "tests" / "dist_worker.py")
TOL = 1e-5


# ----- framework-neutral pieces (no processes) --------------------------------------------
@pytest.mark.parametrize("n", [64, 61, 57, 3])
def test_classify_shards_partition_the_global_plan(n):
    B, world = 4, 2
    glob = classify_batches(n, B * world, 5, 1)
    shards = [batching.classify_plan(n, B, 5, 1, r, world) for r in range(world)]
    assert len(shards[0]) == len(shards[1]) == batching.classify_steps(n, B, world)
    for k, batch in enumerate(glob[:len(shards[0])]):
        parts = [shards[r][k] for r in range(world)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), batch)
        assert abs(sum(p[1] for p in parts) - 1.0) < 1e-12
        assert all(abs(w - len(i) / len(batch)) < 1e-12 for i, w in parts)
    # one process: exactly the plain plan
    plain = batching.classify_plan(n, B, 5, 1)
    assert [list(b) for b, _ in plain] == [list(b) for b in classify_batches(n, B, 5, 1)]
    assert batching.classify_steps(n, B) == len(classify_batches(n, B, 0, 0))


def test_lm_shards_are_rows_of_the_global_streams():
    ids = np.random.default_rng(0).integers(0, 27, 5000).astype(np.int32)
    for epoch in range(3):
        glob = lm_streams(ids, 6, 10, 2, epoch)
        parts = [batching.lm_shard_streams(ids, 3, 10, 2, epoch, r, 2) for r in range(2)]
        np.testing.assert_array_equal(np.concatenate(parts), glob)
        np.testing.assert_array_equal(batching.lm_shard_streams(ids, 6, 10, 2, epoch), glob)
    with pytest.raises(ValueError, match="too short"):
        batching.lm_steps(50, 4, 10, 2)


def test_single_process_agreements_and_fault_spec():
    d = distributed.DistInfo()
    assert not d.enabled and d.is_main and d.watchdog is None
    assert d.from_main(1.5) == 1.5 and d.any(True) and not d.any(False)
    np.testing.assert_array_equal(d.gather_floats([1, 2]), [[1.0, 2.0]])
    assert d.should_stop(lambda: True, 3, False, 50)
    assert distributed.parse_fault("1:3:exit") == (1, 3, "exit")
    assert distributed.parse_fault("1:3:explode") is None and distributed.parse_fault(None) is None


def test_two_simulated_ranks_agree():
    """Agreements built on one all_sum, with the sum done by hand for two 'ranks'."""
    pending = {}

    def make(rank):
        def all_sum(v):
            pending[rank] = v
            return pending.get(0, 0) + pending.get(1, 0)
        return distributed.DistInfo(rank=rank, world_size=2, all_sum=all_sum, timeout_s=0)

    r0, r1 = make(0), make(1)
    r1.gather_floats([0.0])  # rank 1 contributes its row first
    assert r0.gather_floats([7.0]).tolist() == [[7.0], [0.0]]
    pending.clear()
    r1.sum_floats([0.0, 0.0])
    assert r0.from_main(2.5) == 2.5
    assert not r0.should_stop(lambda: True, 3, False, 50)  # only at agreement points


def test_launcher_exit_status():
    assert exit_status([0, 0]) == 0
    assert exit_status([-15, 17]) == 17
    assert exit_status([-15, -9]) == 137  # the killed rank, not the one the launcher stopped
    assert exit_status([None, 0]) == 1


# ----- launches ------------------------------------------------------------------------------
def _free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (one ring port per rank)."""
    return free_ports(2)


def _mlx_launch(args, env=None, timeout=150):
    cmd = [sys.executable, "-m", "mlx_rnn.tools.launch", "-n", "2", "--backend", "ring",
           "--starting-port", str(_free_port_pair()), "--", sys.executable, *args]
    return _run(cmd, env, timeout)


def _torchrun(args, env=None, timeout=150):
    pytest.importorskip("torch")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--monitor-interval", "0.5", *args]
    return _run(cmd, env, timeout)


def _run(cmd, env, timeout):
    full_env = {k: v for k, v in os.environ.items() if k != distributed.FAULT_ENV}
    full_env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)
    proc.elapsed = time.monotonic() - t
    return proc


def _single(framework, out, timeout=150):
    if framework == "torch":
        pytest.importorskip("torch")
    return _run([sys.executable, WORKER, framework, str(out), "--batch-size", "8"], None, timeout)


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_two_ranks_match_one_process_with_double_batch(framework, tmp_path):
    """10 steps of each task: 2 ranks x batch 4 == 1 process x batch 8 (dropout off, same seed and
    global batch order; the classifier's last global batch is 3 short, split 3 + 2)."""
    one = _single(framework, tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    args = [WORKER, framework, str(tmp_path), "--batch-size", "4", "--distributed"]
    two = _mlx_launch(args) if framework == "mlx" else _torchrun(args)
    assert two.returncode == 0, (two.stdout[-2000:], two.stderr[-3000:])
    for task in ("classify", "lm"):
        a = np.load(tmp_path / f"{framework}-{task}-w1.npz")
        b = np.load(tmp_path / f"{framework}-{task}-w2.npz")
        assert sorted(a.files) == sorted(b.files)
        diff = max(float(np.abs(a[k] - b[k]).max()) for k in a.files)
        assert diff < TOL, (task, diff)
        moved = max(float(np.abs(a[k]).max()) for k in a.files)
        assert moved > 0
        ja = json.loads((tmp_path / f"{framework}-{task}-w1.json").read_text())
        jb = json.loads((tmp_path / f"{framework}-{task}-w2.json").read_text())
        assert ja["steps"] == jb["steps"] == 10
        assert abs(ja["losses"][0] - jb["losses"][0]) < 1e-5  # the global mean loss, on every rank


_LONG = ["--batch-size", "4", "--distributed", "--epochs", "200", "--tasks", "classify"]


@pytest.mark.parametrize("framework,mode", [("mlx", "exit"), ("mlx", "kill"), ("torch", "kill")])
def test_dead_rank_ends_the_run_nonzero_within_60s(framework, mode, tmp_path):
    """Rank 1 dies after step 3 (exit 17 or SIGKILL): the launcher must exit non-zero, fast."""
    args = [WORKER, framework, str(tmp_path), *_LONG]
    env = {distributed.FAULT_ENV: f"1:3:{mode}"}
    proc = _mlx_launch(args, env, timeout=120) if framework == "mlx" else _torchrun(args, env, timeout=120)
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert proc.elapsed < 60, proc.elapsed
    assert "fault injection" in proc.stderr
    if framework == "mlx":
        assert proc.returncode == (17 if mode == "exit" else 137)
    assert not (tmp_path / f"{framework}-classify-w2.npz").exists()


def test_hung_rank_is_ended_by_the_watchdog(tmp_path):
    """Rank 1 hangs (a frozen peer keeps its sockets open, so the ring cannot tell): rank 0's
    watchdog (--dist-timeout 4) ends it, and the launcher the rest."""
    args = [WORKER, "mlx", str(tmp_path), *_LONG, "--dist-timeout", "4"]
    proc = _mlx_launch(args, {distributed.FAULT_ENV: "1:3:hang"}, timeout=120)
    assert proc.returncode == distributed.EXIT_PEER_LOST, proc.stderr[-2000:]
    assert proc.elapsed < 60
    assert "rank 0: no progress for 4 s" in proc.stderr


def test_scaling_report_structure():
    """The scaling function (tiny settings: structure and arithmetic, not speed)."""
    from mlx_rnn.tools.bench.scaling import measure_scaling

    r = measure_scaling("mlx", (1, 2), hidden_size=16, embed_dim=8, batch_size=4, seq_len=16, steps=3, repeats=1,
                        threads_per_rank=1, timeout_s=120)
    rows = r["scaling"]
    assert [row["ranks"] for row in rows] == [1, 2]
    assert all(row["chars_per_s"] > 0 and row["threads_per_rank"] == 1 for row in rows)
    assert rows[0]["efficiency"] == 1.0
    assert abs(rows[1]["efficiency"] - rows[1]["chars_per_s"] / (2 * rows[0]["chars_per_s"])) < 1e-12
    assert r["cpu_count"] == os.cpu_count() and "weak scaling" in r["note"]
