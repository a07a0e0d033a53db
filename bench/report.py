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
    if not corio or not other:
        return "—"
    c, o = statistics.median(corio), statistics.median(other)
    num, den = (c, o) if higher_is_better else (o, c)
    return f"{num / den:.2f}x" if den > 0 else "—"


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
