"""The plots of bench/run_bench.py's report: bar charts of medians with min–max error bars, corio
in one highlighted colour, every other server in a muted colour of its own (the same in every
figure). matplotlib with the Agg backend: no display needed.

A value is (median, min, max), or None when the server has no figure there (not run, failed,
"n/a"): its bar is left out and its label says so.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from report import fmt  # noqa: E402

HIGHLIGHT = "#d62728"  # corio
COLOURS = {
    "raw epoll": "#555555",
    "nginx": "#2ca089",
    "libuv": "#4c72b0",
    "asio": "#55a868",
    "tokio": "#8172b2",
    "go": "#64b5cd",
    "go net/http": "#2a6f8e",
    "uvloop": "#ccb974",
    "uvloop protocol": "#ccb974",
    "uvloop streams": "#9c8a3c",
    "asyncio": "#937860",
    "asyncio protocol": "#c0a890",
    "asyncio streams": "#937860",
}
FALLBACK = "#a0a0a0"
DPI = 110


def colour(name):
    return HIGHLIGHT if name == "corio" else COLOURS.get(name, FALLBACK)


def _style(bar_container, name):
    """corio's bars stand out: highlighted, with a dark edge."""
    for bar in bar_container:
        if name == "corio":
            bar.set_edgecolor("black")
            bar.set_linewidth(1.2)


def _log_scale(ax, values):
    """A log scale with plain tick labels (1, 2, 5 per decade) when the values span more than
    a factor of 3; a linear scale says more about values that are close together."""
    positive = [v for v in values if v > 0]
    if not positive or max(positive) / min(positive) <= 3:
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _plain_ticks(ax):
    """Tick labels such as 50,000 rather than 50000 or 5e4."""
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"))


def _error(value):
    median, lo, hi = value
    return [[median - lo], [hi - median]]


def _grouped(ax, groups, series, ylabel):
    """Bars of every series side by side within each group."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (name, values) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        for x, value in zip(xs, values):
            if value is None:
                continue
            bars = ax.bar(x, value[0], width * 0.9, color=colour(name), yerr=_error(value),
                          capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "black"})
            _style(bars, name)
        # One invisible bar per series for the legend, so that it lists every server once.
        label = name if any(v is not None for v in values) else f"{name} (no figure)"
        ax.bar(0, 0, 0, color=colour(name), label=label,
               edgecolor="black" if name == "corio" else None)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    _plain_ticks(ax)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def grouped_bars(path, title, ylabel, groups, series):
    """One figure: groups along x (e.g. connection counts), one bar per series in each.
    series: [(name, [value per group])]."""
    fig, ax = plt.subplots(figsize=(max(8, 1.2 + 0.35 * len(series) * len(groups)), 5))
    _grouped(ax, groups, series, ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def grouped_bar_panels(path, title, ylabel, panels):
    """Panels of grouped bars stacked vertically, one shared legend.
    panels: [(panel title, groups, series)]."""
    n = len(panels)
    most = max((len(series) * len(groups) for _, groups, series in panels), default=1)
    fig, axes = plt.subplots(n, 1, figsize=(max(8, 1.2 + 0.35 * most), 3.6 * n + 0.6),
                             squeeze=False)
    for ax, (sub, groups, series) in zip(axes[:, 0], panels):
        _grouped(ax, groups, series, ylabel)
        ax.set_title(sub)
    axes[0][0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the suptitle
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def bar_panels(path, title, panels, columns=None):
    """Panels of one bar per server, each labelled with its median.
    panels: [(panel title, [(name, value)], log scale?)]; see _log_scale for when it is."""
    n = len(panels)
    columns = columns or n
    rows = (n + columns - 1) // columns
    most = max((len(bars) for _, bars, _ in panels), default=1)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(columns * max(4, 0.55 * most + 1), rows * 4.2))
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (sub, bars, log) in zip(axes.flat, panels):
        labels = []
        for x, (name, value) in enumerate(bars):
            labels.append(name if value is not None else f"{name}\n(n/a)")
            if value is None:
                continue
            b = ax.bar(x, value[0], 0.7, color=colour(name), yerr=_error(value), capsize=3,
                       error_kw={"elinewidth": 0.8, "ecolor": "black"})
            _style(b, name)
            ax.annotate(fmt(value[0]), (x, value[2]), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=8)
        _plain_ticks(ax)
        if log:
            _log_scale(ax, [v[1] for _, v in bars if v is not None])
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=9)
        ax.set_title(sub, fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
        ax.set_axisbelow(True)
        ax.margins(y=0.12)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the suptitle
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
