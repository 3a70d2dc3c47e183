"""benchmark.py's judgement of a disturbed run (mlx_rnn/tools/bench/trust.py) and the report's
wording when it flags one: synthetic timings, samples and clocks only, nothing timed here."""

import math

import pytest

from mlx_rnn.tools.bench import trust
from mlx_rnn.tools.bench.report import format_markdown, ratios_disturbed

CLASSIFY = {"task": "classify", "embed_dim": 32, "hidden_size": 128, "num_layers": 1, "batch_size": 64, "seq_len": 20}


def sample(t, busy=None, own=0.0, load1=None):
    return {"t": t, "busy_cpu_s": busy, "own_cpu_s": own, "load1": load1}


def timed(name, other, seconds=20.0):
    """A configuration's timed-phase window as the driver makes it, measured by busy CPU time."""
    return trust.window(name, sample(0.0, busy=0.0), sample(seconds, busy=(2.0 + other) * seconds, own=2.0 * seconds))


def row(config, fw, times):
    return {"config": config, "framework": fw, "epoch_times_s": list(times)}


def rows(mlx, torch, op=None, config="classify"):
    out = [row(config, "mlx", mlx), row(config, "torch", torch)]
    return out + ([row(config, "mlx-op", op)] if op else [])


# ----- measuring other processes' CPU use -----------------------------------------------------------------
def test_proc_stat_busy_time_counts_busy_and_steal_ticks_of_the_chosen_cpus():
    text = ("cpu  100 10 50 1000 7 1 2 30 5 0\n"
            "cpu0 60 10 20 500 3 1 1 10 5 0\n"
            "cpu1 40 0 30 500 4 0 1 20 0 0\n"
            "intr 12345\nctxt 999\n")
    assert trust.proc_stat_busy_s(text, None, 100.0) == pytest.approx((100 + 10 + 50 + 1 + 2 + 30) / 100)
    assert trust.proc_stat_busy_s(text, {1}, 100.0) == pytest.approx((40 + 0 + 30 + 0 + 1 + 20) / 100)
    assert trust.proc_stat_busy_s("intr 1\n", None, 100.0) is None


def test_other_cpus_from_busy_cpu_time_less_the_benchmarks_own():
    # 10 s: 15 busy CPU-seconds, 10 of them the benchmark's: others used 0.5 CPUs
    value, how = trust.other_cpus(sample(0, busy=100.0, own=1.0), sample(10, busy=115.0, own=11.0))
    assert value == pytest.approx(0.5) and how.startswith("busy")
    # CPU time the workers spent before the window is not the window's
    value, _ = trust.other_cpus(sample(0, busy=0.0), sample(10, busy=20.0, own=30.0), own_outside_s=12.0)
    assert value == pytest.approx(0.2)
    # never negative
    assert trust.other_cpus(sample(0, busy=0.0), sample(10, busy=5.0, own=10.0))[0] == 0.0


def test_other_cpus_from_the_load_average_undoes_its_decay():
    a = math.exp(-120 / 60)
    # a steady load of 3 runnable threads, 2 of them the benchmark's (20 CPU-s in 10 s): others 1
    value, how = trust.other_cpus(sample(0, load1=3.0), sample(10, own=20.0, load1=3.0))
    assert value == pytest.approx(1.0) and how == "1-minute load average"
    # a previous run's load 2 decaying while the benchmark alone runs 1.5 threads: others 0
    value, _ = trust.other_cpus(sample(0, load1=2.0), sample(120, own=180.0, load1=a * 2.0 + (1 - a) * 1.5))
    assert value == pytest.approx(0.0, abs=1e-9)
    # "auto" prefers busy CPU time; "load" asks for the load average; neither measured: None
    both = (sample(0, busy=0.0, load1=3.0), sample(10, busy=20.0, own=20.0, load1=3.0))
    assert trust.other_cpus(*both)[0] == 0.0 and trust.other_cpus(*both, method="load")[0] == pytest.approx(1.0)
    assert trust.other_cpus(sample(0), sample(10))[0] is None


def test_load_limit_is_the_free_cpus_plus_a_margin():
    assert trust.load_limit(2, 2) == pytest.approx(0.3)
    assert trust.load_limit(2, 1) == pytest.approx(1.3)
    assert trust.load_limit(16, 16) == pytest.approx(0.8)  # one busy core is too many for a 16-thread pool
    assert trust.benchmark_threads(2, None) == 2 and trust.benchmark_threads(16, 4) == 4
    assert trust.benchmark_threads(2, 8) == 2
    assert trust.benchmark_threads(10, None, ["gpu", "mps"]) == 1
    assert trust.benchmark_threads(10, None, ["gpu", "cpu"]) == 10


def test_a_short_load_average_window_is_recorded_but_not_judged():
    short = trust.window("classify", sample(0, load1=3.0), sample(10, load1=3.0), method="load")
    assert short["other_cpus"] == pytest.approx(3.0) and short["judged"] is False
    long = trust.window("classify", sample(0, load1=3.0), sample(60, load1=3.0), method="load")
    assert long["judged"] is True
    # the whole-run load average is judged only where the timed phases had no busy-CPU-time measure
    run = trust.whole_run_window(sample(0, load1=3.0), sample(60, load1=3.0), [timed("classify", 0.0)])
    assert run["judged"] is False and run["sections"] == ["classify"]
    assert trust.whole_run_window(sample(0, load1=3.0), sample(60, load1=3.0), [long])["judged"] is True


# ----- the judgement ----------------------------------------------------------------------------------
def test_a_quiet_consistent_run_is_trustworthy():
    j = trust.judge(rows([1.00, 1.05, 1.02], [1.10, 1.12, 1.08], op=[2.0, 2.1, 2.05]), [timed("classify", 0.05)], 2, 2)
    assert j["trustworthy"] is True and j["reasons"] == [] and j["disturbed"] == []
    assert j["spread"]["classify"]["torch"] == pytest.approx(1.12 / 1.08)
    assert set(j["pairs"]["classify"]) == {"mlx", "mlx-op"}


def test_other_processes_on_the_cpus_flag_the_run():
    """The issue's run: load average 2.6-3.7 on 2 cores; consistent repeats do not hide it."""
    j = trust.judge(rows([1.0, 1.0, 1.0], [11.0, 11.2, 10.9]), [timed("classify", 1.2)], 2, 2)
    assert j["trustworthy"] is False and j["disturbed"] == ["classify"]
    assert len(j["reasons"]) == 1 and "other processes used 1.20 CPUs" in j["reasons"][0]
    assert "--wait-quiet" in j["advice"] and "--repeats" in j["advice"]


def test_a_wide_spread_of_repeats_flags_the_run():
    j = trust.judge(rows([1.0, 1.0, 1.0], [1.0, 3.2, 1.1]), [timed("classify", 0.0)], 2, 2)
    assert j["trustworthy"] is False
    assert any("torch's slowest repeat took 3.20x its fastest" in r for r in j["reasons"])


def test_disagreeing_pairs_flag_the_run_even_when_each_spread_is_modest():
    # each framework's repeats within 1.4x, but MLX was slow while PyTorch was fast and vice versa
    j = trust.judge(rows([1.0, 1.4, 1.0], [1.4, 1.0, 1.4]), [timed("classify", 0.0)], 2, 2)
    assert j["trustworthy"] is False
    assert [r for r in j["reasons"] if "per-round mlx / torch ratios" in r]
    assert j["pairs"]["classify"]["mlx"] == pytest.approx(1.4 / (1 / 1.4))


def test_five_repeats_forgive_one_disturbed_repeat():
    mlx, torch = [1.0, 1.02, 1.01, 1.03, 1.0], [1.1, 1.1, 3.0, 1.12, 1.11]
    assert trust.judge(rows(mlx, torch), [timed("classify", 0.0)], 2, 2)["trustworthy"] is True
    assert trust.judge(rows(mlx[:3], torch[:3]), [timed("classify", 0.0)], 2, 2)["trustworthy"] is False
    # two disturbed repeats are not forgiven
    assert trust.judge(rows(mlx, [1.1, 3.0, 3.0, 1.12, 1.11]), [timed("classify", 0.0)], 2, 2)["trustworthy"] is False


def test_one_repeat_says_what_cannot_be_judged():
    j = trust.judge(rows([1.0], [1.1]), [timed("classify", 0.0)], 2, 2)
    assert j["trustworthy"] is True and j["spread"]["classify"]["mlx"] is None
    assert any("1 repeat" in n for n in j["notes"])


def test_a_disturbed_sweep_is_named_apart_from_the_configurations():
    sweep = dict(timed("sweep lm hidden_size=512", 1.0), sections=["sweep"])
    j = trust.judge(rows([1.0, 1.0, 1.0], [1.1, 1.1, 1.1]), [timed("classify", 0.0), sweep], 2, 2)
    assert j["trustworthy"] is False and j["disturbed"] == ["sweep"]


# ----- waiting for a quiet machine (a fake clock) ---------------------------------------------------------
class FakeMachine:
    """Samples whose busy CPU time grows by ``others[i]`` CPUs during step i (nothing of ours)."""

    def __init__(self, others):
        self.others, self.t, self.busy, self.slept = list(others), 0.0, 0.0, []

    def sample(self):
        return sample(self.t, busy=self.busy)

    def sleep(self, s):
        self.slept.append(s)
        self.busy += (self.others.pop(0) if self.others else 0.0) * s
        self.t += s


def test_wait_quiet_waits_until_other_processes_leave_the_cpus():
    m, lines = FakeMachine([1.5, 0.9, 0.1]), []
    out = trust.wait_quiet(600, 0.3, lines.append, sample=m.sample, sleep=m.sleep)
    assert out["quiet"] is True and out["waited_s"] == pytest.approx(30) and out["other_cpus"] == pytest.approx(0.1)
    assert m.slept == [10.0, 10.0, 10.0] and any("quiet after 30 s" in ln for ln in lines)


def test_wait_quiet_gives_up_at_its_limit_and_says_so():
    m, lines = FakeMachine([1.0] * 100), []
    out = trust.wait_quiet(60, 0.3, lines.append, sample=m.sample, sleep=m.sleep)
    assert out["quiet"] is False and out["waited_s"] == pytest.approx(60) and len(m.slept) == 6
    assert "still busy after 60 s" in lines[-1] and "running anyway" in lines[-1]


def test_wait_quiet_without_a_measure_runs_at_once():
    out = trust.wait_quiet(600, 0.3, sample=lambda: sample(0.0), sleep=lambda s: None)
    assert out["quiet"] is False and out["other_cpus"] is None


# ----- the report's wording ---------------------------------------------------------------------------
def full_row(config, fw, times):
    med = sorted(times)[len(times) // 2]
    return {"config": config, "settings": dict(CLASSIFY), "framework": fw, "framework_version": "0",
            "device": "cpu", "timing": "quick", "data": "real", "epoch_times_s": list(times),
            "median_epoch_s": med, "min_epoch_s": min(times), "max_epoch_s": max(times), "steps_per_s": 10.0,
            "chars_per_s": 12800.0, "peak_memory_bytes": 2**20, "peak_memory_source": "peak RSS (ru_maxrss)",
            "peak_rss_bytes": 2**20, "sgemm_gflops": 100.0}


def report_for(mlx, torch, other):
    results = [full_row("classify", "mlx", mlx), full_row("classify", "torch", torch)]
    judgement = trust.judge(results, [timed("classify", other)], 2, 2)
    env = {"os": "Linux", "python": "3.11", "cpu_model": "test CPU", "cpu_count": 2, "thread_env": {},
           "load_average_start": [3.1, 2.9, 2.5], "load_average_end": [3.4, 3.0, 2.6]}
    return {"environment": env, "mode": "quick", "repeats": len(mlx), "results": results,
            "ratios": {"classify": results[0]["median_epoch_s"] / results[1]["median_epoch_s"]},
            "ratios_min": {"classify": min(mlx) / min(torch)}, "ratios_paired": {"classify": 0.09},
            "notes": [], "wall_time_s": 60.0, "trustworthy": judgement["trustworthy"], "trust": judgement}


def test_a_disturbed_report_prints_no_headline_ratio():
    report = report_for([1.0, 1.0, 1.0], [11.0, 11.0, 11.0], other=1.2)
    text = format_markdown(report)
    assert ratios_disturbed(report)
    assert "**Not to be trusted: this run was disturbed**" in text
    assert "other processes used 1.20 CPUs" in text and "--wait-quiet 600" in text
    assert "x faster" not in text  # no "MLX 11x faster" anywhere
    ratio_lines = [ln for ln in text.splitlines() if "Ratio MLX / PyTorch" in ln]
    assert ratio_lines and all(ln.startswith("Disturbed run, not a result: ") for ln in ratio_lines)
    # the warning comes before the figures it is about
    assert text.index("Not to be trusted") < text.index("Ratio MLX / PyTorch")


def test_an_undisturbed_report_prints_its_headline_and_the_figures_that_cleared_it():
    report = report_for([1.0, 1.02, 1.01], [1.1, 1.12, 1.11], other=0.05)
    text = format_markdown(report)
    assert not ratios_disturbed(report) and "Not to be trusted" not in text
    assert "Ratio MLX / PyTorch (median epoch time): classify 0.91 (MLX 1.10x faster)" in text
    assert "Judged undisturbed: other processes used at most 0.05 CPUs while it timed (limit 0.30)" in text


def test_a_report_without_a_judgement_reads_as_before():
    """JSON written before the judgement existed: no trust section, the ratios as they were."""
    report = report_for([1.0, 1.02, 1.01], [1.1, 1.12, 1.11], other=0.0)
    del report["trust"], report["trustworthy"]
    text = format_markdown(report)
    assert "Judged" not in text and "Not to be trusted" not in text and "(MLX 1.10x faster)" in text
