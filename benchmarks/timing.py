"""How the benchmarks time code: `torch.utils.benchmark.Timer` for each call (it synchronises CUDA and keeps the
garbage collector out of the measurement), and the functions being compared called in turn, round after round, so
that a machine's drift (another process, thermal throttling) hits all of them alike."""
import statistics
from torch.utils.benchmark import Timer


def call_ms(fn)->float:
    "Wall time of one call of `fn()` in milliseconds, measured by torch's benchmark Timer."
    return 1e3 * Timer(stmt="fn()", globals=dict(fn=fn)).timeit(1).mean


def alternated_ms(fns:dict, repeats:int, warmup_rounds:int=1)->dict:
    "name -> wall times (ms) of each function over `repeats` rounds; each round calls every function in turn, after `warmup_rounds` unmeasured rounds."
    for _ in range(warmup_rounds):
        for fn in fns.values(): fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items(): times[k].append(call_ms(fn))
    return times


def alternated_median_ms(fns:dict, repeats:int, warmup_rounds:int=1)->dict:
    "name -> median wall time (ms) of each function, called in turn (see `alternated_ms`)."
    return {k: statistics.median(v) for k, v in alternated_ms(fns, repeats, warmup_rounds).items()}


def median_ms(fn, repeats:int)->float:
    "Median wall time of `fn()` in milliseconds over `repeats` calls, after one warm-up call."
    return alternated_median_ms({"": fn}, repeats)[""]


def paired_slope_ms(times:dict, short:str, long:str, extra_steps:int)->float:
    "Median over rounds of (long - short) / extra_steps: the cost of one more step, differenced within each round."
    return statistics.median((l - s) / extra_steps for s, l in zip(times[short], times[long]))
