"""Was the benchmark disturbed? Other processes' CPU use, the repeats' spread, the paired ratios.

A ratio of two frameworks' times measured while something else runs on the machine is not a
result: code that runs a thread pool (PyTorch's OpenMP, OpenBLAS, the native LSTM's team)
loses most when a core is taken, so the ratio moves, in either direction (on a 2-core machine
at load average 3 the benchmark once printed MLX / PyTorch 0.09 where a quiet run gave 0.87).
Three kinds of evidence, judged by :func:`judge` (pure: no clock, no files):

- **other processes' CPU use** over each configuration's timed phase (:func:`other_cpus`):
  the machine's busy CPU time (``/proc/stat``, the CPUs this process may use; steal time
  counts, it is CPU a hypervisor gave to someone else) minus the benchmark's own (its process
  and its workers'), per second: on Linux. Elsewhere the 1-minute load average over the whole
  run, less its decay from the start value, minus the benchmark's own CPU use per second;
- **the spread of one framework's repeats** (slowest / fastest repeat);
- **the paired ratios**: MLX and PyTorch run alternately, so each round gives one ratio; when
  the rounds disagree, the machine's speed changed under the run.

With 5 or more repeats one outlier is forgiven (the slowest repeat, the pair farthest from the
median), as the medians the report uses forgive it. Framework-neutral; imports no framework.
"""

from __future__ import annotations

import math
import os
import statistics
import time

#: Limits: slowest / fastest repeat of one framework, largest / smallest per-round ratio.
SPREAD_LIMIT = 1.5
PAIRS_LIMIT = 1.5
#: Other processes may use this many CPUs on top of those the benchmark leaves free:
#: max(MARGIN_CPUS, MARGIN_FRACTION x the CPUs). Small, since a thread pool waits for its slowest
#: thread: one core taken from a pool that uses every core slows the whole pool.
MARGIN_CPUS, MARGIN_FRACTION = 0.3, 0.05
#: The load-average estimate is judged only over a run at least this long (it updates every 5 s).
LOAD_WINDOW_MIN_S = 30.0
LOAD_TAU_S = 60.0  # the 1-minute load average's time constant
#: Ratios judged by pairs: (framework, the framework it is divided by).
PAIRED = (("mlx", "torch"), ("mlx-op", "torch"))
ADVICE = ("Rerun on a quiet machine: --wait-quiet 600 waits up to 10 minutes until other processes leave "
          "the CPUs free; --repeats 5 (or more) lets one disturbed repeat be forgiven.")


# ----- what the machine did (the only impure part) -------------------------------------------------------
def proc_stat_busy_s(text: str, cpus: set[int] | None, ticks_per_s: float) -> float | None:
    """Busy CPU seconds since boot in ``/proc/stat`` text: user + nice + system + irq + softirq +
    steal (guest time is inside user), summed over the ``cpus`` lines (None: the aggregate line).
    None when the text has no such line."""
    total, found = 0, False
    for line in text.splitlines():
        name, *fields = line.split() or [""]
        if not name.startswith("cpu") or len(fields) < 8:
            continue
        if (cpus is None and name == "cpu") or (cpus is not None and name[3:].isdigit() and int(name[3:]) in cpus):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
            total += user + nice + system + irq + softirq + steal
            found = True
    return total / ticks_per_s if found else None


def machine_sample() -> dict:
    """Now: ``t`` (monotonic s), ``load1`` (1-minute load average or None), ``busy_cpu_s`` (busy
    CPU seconds of the CPUs this process may use, from /proc/stat, or None) and ``own_cpu_s``
    (CPU seconds of this process and its children that have been waited for)."""
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    busy = None
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            text = fh.read()
        cpus = os.sched_getaffinity(0)
        every = {int(ln.split()[0][3:]) for ln in text.splitlines() if ln[:3] == "cpu" and ln.split()[0][3:].isdigit()}
        busy = proc_stat_busy_s(text, None if cpus == every else cpus, os.sysconf("SC_CLK_TCK"))
    except (OSError, AttributeError, ValueError):
        pass
    t = os.times()
    return {"t": time.monotonic(), "load1": load1, "busy_cpu_s": busy,
            "own_cpu_s": t.user + t.system + t.children_user + t.children_system}


# ----- pure judgement --------------------------------------------------------------------------------
def other_cpus(start: dict, end: dict, own_outside_s: float = 0.0, method: str = "auto") -> tuple[float | None, str]:
    """CPUs other processes used on average between two :func:`machine_sample` results:
    (value >= 0 or None, how it was measured).

    ``own_outside_s``: CPU seconds inside ``end["own_cpu_s"] - start["own_cpu_s"]`` that were
    spent before ``start`` (workers alive at ``start`` are counted when waited for).
    ``method``: "cpu" (busy CPU time; None when absent), "load" (the load average) or "auto"
    (busy CPU time where there is one, else the load average). The load-average estimate
    undoes the average's decay: over ``dt`` s it moves from L0 to L1 = a L0 + (1 - a) x with
    a = exp(-dt / 60 s), x the mean number of runnable threads; others' share is x minus the
    benchmark's own CPU use per second (an overestimate when the benchmark's threads waited
    for a core, which is the direction that flags).
    """
    dt = end["t"] - start["t"]
    if dt <= 0:
        return None, "no time passed"
    own = max(0.0, end["own_cpu_s"] - start["own_cpu_s"] - own_outside_s) / dt
    if method in ("auto", "cpu") and start.get("busy_cpu_s") is not None and end.get("busy_cpu_s") is not None:
        return max(0.0, (end["busy_cpu_s"] - start["busy_cpu_s"]) / dt - own), "busy CPU time (/proc/stat)"
    if method in ("auto", "load") and start.get("load1") is not None and end.get("load1") is not None:
        a = math.exp(-dt / LOAD_TAU_S)
        runnable = (end["load1"] - a * start["load1"]) / (1 - a)
        return max(0.0, runnable - own), "1-minute load average"
    return None, "not measured on this system"


def benchmark_threads(cpus: int, threads: int | None, devices=("cpu",)) -> int:
    """The CPU threads the benchmark's workers keep busy: ``--threads`` (else every CPU) when a
    framework trains on the CPU; 1 (the thread that feeds the device) when all train on GPUs."""
    if all(d != "cpu" for d in devices):
        return 1
    return min(cpus, threads or cpus)


def load_limit(cpus: int, own_threads: int) -> float:
    """The most CPUs other processes may use: those the benchmark leaves free plus a margin."""
    return max(0, cpus - own_threads) + max(MARGIN_CPUS, MARGIN_FRACTION * cpus)


def spread(times: list[float]) -> float | None:
    """Slowest / fastest repeat (the slowest dropped from 5 repeats on); None below 2 repeats."""
    xs = sorted(times)
    if len(xs) >= 5:
        xs = xs[:-1]
    return xs[-1] / xs[0] if len(xs) >= 2 and xs[0] > 0 else None


def pair_ratios(a: list[float], b: list[float]) -> list[float]:
    """Per round: a's time / b's time (the repeats alternate, so each round is one pair)."""
    return [x / y for x, y in zip(a, b) if y > 0]


def pairs_spread(ratios: list[float]) -> float | None:
    """Largest / smallest per-round ratio (the one farthest from the median, in log terms,
    dropped from 5 pairs on); None below 2 pairs."""
    rs = list(ratios)
    if len(rs) >= 5:
        med = statistics.median(rs)
        rs.remove(max(rs, key=lambda r: abs(math.log(r / med))))
    return max(rs) / min(rs) if len(rs) >= 2 and min(rs) > 0 else None


def judge(results: list[dict], windows: list[dict], cpus: int, own_threads: int) -> dict:
    """Whether the run's ratios can be trusted.

    ``results``: the report's rows (``config``, ``framework``, ``epoch_times_s`` in run order);
    ``windows``: ``{"name", "seconds", "other_cpus" (or None), "method", "judged"}`` per
    measured stretch (each configuration's timed phase, the whole run, the sweep); ``cpus``: the
    usable CPUs; ``own_threads``: the threads the benchmark's workers run.

    Returns ``{"trustworthy": bool, "reasons": [one line each], "disturbed": [configs, "sweep"],
    "load": {...}, "spread": {config: {framework: x}}, "pairs": {config: {framework: x}},
    "limits": {...}, "notes": [...], "advice": str}``.
    """
    limit = load_limit(cpus, own_threads)
    reasons, disturbed, notes = [], [], []
    for w in windows:
        v = w.get("other_cpus")
        if w.get("judged") and v is not None and v > limit:
            reasons.append(f"{w['name']}: other processes used {v:.2f} CPUs on average ({w['method']}, over "
                           f"{w['seconds']:.0f} s; the limit is {limit:.2f} on {cpus} CPUs with the benchmark's "
                           f"{own_threads} thread{'s' if own_threads != 1 else ''})")
            disturbed += w.get("sections", [w["name"]])
    spreads: dict[str, dict] = {}
    pairs: dict[str, dict] = {}
    by_key = {(r["config"], r["framework"]): r["epoch_times_s"] for r in results}
    for (config, fw), times in by_key.items():
        s = spread(times)
        spreads.setdefault(config, {})[fw] = s
        if s is not None and s > SPREAD_LIMIT:
            reasons.append(f"{config}: {fw}'s slowest repeat took {s:.2f}x its fastest (limit {SPREAD_LIMIT})")
            disturbed.append(config)
    for config in dict.fromkeys(c for c, _ in by_key):
        for fw, base in PAIRED:
            if (config, fw) in by_key and (config, base) in by_key:
                rs = pair_ratios(by_key[(config, fw)], by_key[(config, base)])
                p = pairs_spread(rs)
                pairs.setdefault(config, {})[fw] = p
                if p is not None and p > PAIRS_LIMIT:
                    reasons.append(f"{config}: the per-round {fw} / {base} ratios range {min(rs):.2f}-{max(rs):.2f} "
                                   f"({p:.2f}x apart, limit {PAIRS_LIMIT})")
                    disturbed.append(config)
    if results and max(len(t) for t in by_key.values()) < 2:
        notes.append("1 repeat: the spread of repeats and the agreement of the paired ratios cannot be judged "
                     "(--repeats 3 or more)")
    if windows and not any(w.get("judged") and w.get("other_cpus") is not None for w in windows):
        notes.append("other processes' CPU use was not measured: " + "; ".join(
            f"{w['name']}: {w['method'] if w.get('other_cpus') is None else 'too short to judge'}" for w in windows))
    return {"trustworthy": not reasons, "reasons": reasons, "disturbed": list(dict.fromkeys(disturbed)),
            "load": {"limit_other_cpus": limit, "cpus": cpus, "own_threads": own_threads, "windows": windows},
            "spread": spreads, "pairs": pairs,
            "limits": {"spread": SPREAD_LIMIT, "pairs": PAIRS_LIMIT, "other_cpus": limit},
            "notes": notes, "advice": ADVICE}


# ----- measuring the windows, waiting for quiet ---------------------------------------------------------
def window(name: str, start: dict, end: dict, own_outside_s: float = 0.0, method: str = "auto",
           sections=None) -> dict:
    """One measured stretch for :func:`judge`: other processes' CPUs between two samples. A
    load-average estimate is judged only over :data:`LOAD_WINDOW_MIN_S` or more."""
    value, how = other_cpus(start, end, own_outside_s, method)
    seconds = end["t"] - start["t"]
    judged = value is not None and (how.startswith("busy") or seconds >= LOAD_WINDOW_MIN_S)
    return {"name": name, "seconds": seconds, "other_cpus": value, "method": how, "judged": judged,
            "sections": list(sections or [name]), "load1_start": start.get("load1"), "load1_end": end.get("load1")}


def whole_run_window(start: dict, end: dict, timed: list[dict]) -> dict:
    """The load-average estimate over the whole run (the configurations' start to end): judged
    only where the timed phases had no busy-CPU-time measure (it is the coarser of the two)."""
    w = window("whole run", start, end, method="load", sections=[t["name"] for t in timed])
    if any(t["method"].startswith("busy") for t in timed):
        w["judged"] = False
    return w


def wait_quiet(limit_s: float, max_other: float, log=lambda *a: None, sample=machine_sample, sleep=time.sleep,
               step_s: float = 10.0) -> dict:
    """Wait until other processes use at most ``max_other`` CPUs over ``step_s`` seconds (at most
    ``limit_s``), for at most ``limit_s`` seconds; progress and the outcome go to ``log``. Returns ``{"quiet": bool,
    "waited_s", "other_cpus" (the last measurement, None where there is none), "method",
    "limit_s", "max_other_cpus"}``; ``sample``/``sleep`` are the clock (tests pass fakes)."""
    log(f"waiting up to {limit_s:.0f} s for a quiet machine (other processes using at most {max_other:.2f} CPUs "
        f"over {step_s:.0f} s)")
    step_s = min(step_s, limit_s)
    first = prev = sample()
    while True:
        sleep(step_s)
        now = sample()
        value, how = other_cpus(prev, now)
        waited = now["t"] - first["t"]
        out = {"quiet": value is not None and value <= max_other, "waited_s": waited, "other_cpus": value,
               "method": how, "limit_s": limit_s, "max_other_cpus": max_other}
        if value is None:
            log(f"cannot wait for a quiet machine: other processes' CPU use is {how}; running now")
            return out
        if out["quiet"] or waited >= limit_s:
            log(f"{'quiet' if out['quiet'] else 'still busy'} after {waited:.0f} s: other processes use {value:.2f} "
                f"CPUs ({how}){'' if out['quiet'] else '; running anyway, the report will say so'}")
            return out
        log(f"waiting for a quiet machine: other processes use {value:.2f} CPUs; {waited:.0f}/{limit_s:.0f} s")
        prev = now
