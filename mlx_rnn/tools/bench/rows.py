"""What the timed runs give: matrix-multiply FLOPs per training step, one result row per
configuration and framework, and the MLX / PyTorch ratios (``scripts/benchmark.py``).

Pure arithmetic on the workers' messages (:mod:`mlx_rnn.tools.bench.driver`); no framework.
"""

from __future__ import annotations

import statistics

from .driver import Timing
from .names import SIZE_KEYS, VOCAB_SIZE


def matmul_flops_per_step(task: str, embed_dim: int, hidden_size: int, num_layers: int, batch_size: int,
                          seq_len: int, vocab_size: int = VOCAB_SIZE) -> int:
    """Matrix-multiply FLOPs of one training step (forward + backward), one multiply-add = 2 FLOPs.

    With B batch, T steps, E embedding size, H hidden size, ``in`` = E for layer 0
    and H above, per layer:

    - input projection, all steps at once: (B*T, in) x (in, 4H) -> 2*B*T*in*4H;
    - recurrent, per step (B, H) x (H, 4H), T steps -> 2*B*T*H*4H;

    and the output layer: 2*B*T*H*V for the LM (logits at every step), 2*B*H*1 for
    the classifier (one logit from the last step). The backward pass of a matmul
    Y = X W costs two matmuls of the same size (dX = dY W^T, dW = X^T dY), so
    forward + backward = 3 x forward. Element-wise work (gates, softmax, Adam)
    is not counted: this is the work a BLAS could do, to compare with sgemm peak.
    """
    B, T, E, H, L = batch_size, seq_len, embed_dim, hidden_size, num_layers
    fwd = 0
    for layer in range(L):
        inp = E if layer == 0 else H
        fwd += 2 * B * T * inp * 4 * H + 2 * B * T * H * 4 * H
    fwd += 2 * B * T * H * vocab_size if task == "lm" else 2 * B * H * 1
    return 3 * fwd


def summary(times: list[float]) -> dict:
    """Median, fastest and slowest epoch time (seconds)."""
    return {"median_epoch_s": statistics.median(times), "min_epoch_s": min(times), "max_epoch_s": max(times)}


def result_row(name: str, settings: dict, fw: str, timing: Timing, ready: dict, runs: list[dict], final: dict) -> dict:
    """One row of the report's ``results``: config ``name`` on framework ``fw``, from its worker's
    ``ready`` message, timed ``runs`` and ``final`` message (times in seconds; quick mode scales the
    timed batches to an epoch)."""
    batches, synthetic = timing.batches, timing.synthetic
    spe = ready["steps_per_epoch"]
    batch_times = [m["time_s"] / m["steps"] for m in runs]
    if batches:
        epoch_times = [t * spe for t in batch_times]
        wu = ready["warmup_steps"]
        how = f"quick: {batches} batches x scaled to {spe} steps/epoch (warm-up {wu} batch{'es' if wu != 1 else ''})"
    else:
        epoch_times = [m["time_s"] for m in runs]
        how = "full epochs (warm-up 1 epoch)"
    out = {"config": name, "settings": dict(settings), "framework": fw,
           "framework_version": ready["backend"]["version"], "device": ready["device"], "timing": how,
           "data": "synthetic" if synthetic else "real",
           "repeats": len(runs), "steps_per_epoch": spe, "epoch_times_s": epoch_times, "batch_times_s": batch_times,
           "timed_steps": [m["steps"] for m in runs]}
    out.update(summary(epoch_times))
    out["median_batch_s"] = statistics.median(batch_times)
    out["steps_per_s"] = spe / out["median_epoch_s"]
    out["chars_per_s"] = out["steps_per_s"] * settings["batch_size"] * settings["seq_len"]
    out["peak_memory_bytes"] = final["peak_memory_bytes"]
    out["peak_memory_source"] = final["peak_memory_source"]
    out["peak_rss_bytes"] = final["peak_rss_bytes"]
    out["sgemm_gflops"] = ready["sgemm_gflops"]
    out["fma_peak_gflops"] = ready.get("fma_peak_gflops")
    flops = matmul_flops_per_step(settings["task"], *(settings[k] for k in SIZE_KEYS))
    out["matmul_gflop_per_step"] = flops / 1e9
    out["effective_gflops"] = flops * spe / out["median_epoch_s"] / 1e9
    out["effective_fraction_of_sgemm"] = out["effective_gflops"] / out["sgemm_gflops"] if out["sgemm_gflops"] else None
    out["warmup_s"] = ready["warmup_s"]
    out["warmup_steps"] = ready["warmup_steps"]
    out["blas"] = ready["backend"]["blas"]
    out["precision"] = ready.get("precision")
    out["recurrence"] = ready["backend"].get("recurrence")
    out["fused_adamw"] = ready["backend"].get("fused_adamw")
    out["final_mean_loss"] = runs[-1].get("mean_loss") if runs else None
    return out


def compute_ratios(results: list[dict], names) -> dict:
    """Epoch-time ratios per config: MLX / PyTorch (median, fastest, paired), MLX op / PyTorch
    and MLX / MLX op, for the frameworks that ran."""
    out = {"ratios": {}, "ratios_min": {}, "ratios_paired": {}, "ratios_op": {}, "ratios_native_vs_op": {}}
    for name in names:
        by_fw = {r["framework"]: r for r in results if r["config"] == name}
        m, o, t = by_fw.get("mlx"), by_fw.get("mlx-op"), by_fw.get("torch")
        if m and t:
            out["ratios"][name] = m["median_epoch_s"] / t["median_epoch_s"]
            out["ratios_min"][name] = m["min_epoch_s"] / t["min_epoch_s"]
            out["ratios_paired"][name] = statistics.median(
                a / b for a, b in zip(m["epoch_times_s"], t["epoch_times_s"]))
        if o and t:
            out["ratios_op"][name] = o["median_epoch_s"] / t["median_epoch_s"]
        if m and o:
            out["ratios_native_vs_op"][name] = m["median_epoch_s"] / o["median_epoch_s"]
    return out
