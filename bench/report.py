"""What the benchmark scripts share to print their tables: cells of median (min–max), ratios
oriented so that > 1 means corio is better, and the machine's CPU model."""
import platform
import statistics
from pathlib import Path


def fmt(v):
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def cell(values):
    if not values:
        return "missing"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def ratio(corio, other, higher_is_better):
    """Medians compared so that > 1 means corio is better; "—" when one is missing."""
    r = ratio_value(corio, other, higher_is_better)
    return "—" if r is None else f"{r:.2f}x"


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ratio_value(corio, other, higher_is_better):
    """The number behind `ratio`: medians compared so that > 1 means corio is better; None when
    one is missing or the denominator is not positive."""
    if not corio or not other:
        return None
    c, o = statistics.median(corio), statistics.median(other)
    num, den = (c, o) if higher_is_better else (o, c)
    return num / den if den > 0 else None


def memory_total():
    """Total memory of the machine, e.g. "23.5 GiB" (MemTotal of /proc/meminfo)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"
