"""Wall-clock timing shared by the comparison scripts."""
import statistics
import time


def run_times(fn, repeats, warmup):
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def timeit(fn, repeats, warmup=2):
    """Median seconds per call."""
    return statistics.median(run_times(fn, repeats, warmup))


def best_time(fn, repeat, warmup=1):
    """Fastest call in seconds (the least disturbed by other load)."""
    return min(run_times(fn, repeat, warmup))
