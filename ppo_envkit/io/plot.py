"""Learning curves from run directories' ``progress.csv``, drawn to a PNG.

Uses matplotlib's Agg canvas directly (no ``pyplot``), so it works without a
display and never changes the backend of a program that imports it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import StorageError, quoted

PROGRESS_FILE = "progress.csv"

#: (column, panel title, log scale) in drawing order; panels whose column no run has are left out.
#: Columns of the environment's own metrics (``io.runlog.ENV_METRIC_PREFIX``), one panel each.
ENV_METRIC_PREFIX = "metrics/"
PANELS: tuple[tuple[str, str, bool], ...] = (
    ("episode_return", "episode return", False),
    ("eval_return", "evaluation return (deterministic)", False),
    ("eval_win_rate", "games: win rate vs a random player", False),
    ("selfplay_rating", "games: snapshot rating (openskill ordinal)", False),
    ("episode_length", "episode length", False),
    ("policy_loss", "policy loss", False),
    ("value_loss", "value loss", True),
    ("entropy", "entropy", False),
    ("approx_kl", "approx. KL", True),
    ("clip_fraction", "clip fraction", False),
    ("explained_variance", "explained variance", False),
    ("sps", "steps per second", False),
)


def read_progress(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The columns of ``RUN_DIR/progress.csv`` as float arrays (empty cells become NaN)."""
    run_dir = Path(run_dir)
    path = run_dir / PROGRESS_FILE if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise FileNotFoundError(f"no {PROGRESS_FILE} in {run_dir}: is it a run directory written by train?")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} has no rows yet (the first line appears after the first update)")
    columns: dict[str, np.ndarray] = {}
    for name in rows[0]:
        if name is None:
            continue
        columns[name] = np.array([_number(row.get(name)) for row in rows], dtype=np.float64)
    if "timesteps" not in columns:
        raise ValueError(f"{path} has no 'timesteps' column; is it a ppo-envkit progress file?")
    return columns


def _number(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _run_label(run_dir: Path, others: Sequence[Path]) -> str:
    """The run directory's name, or more of its path when names collide."""
    name = run_dir.resolve().name
    if sum(p.resolve().name == name for p in others) > 1:
        return str(run_dir)
    return name


def plot_runs(
    run_dirs: Sequence[str | Path], output: str | Path, *, title: str | None = None, dpi: int = 110
) -> Path:
    """Draw every panel of :data:`PANELS` for the runs (one line per run) and write a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not run_dirs:
        raise ValueError("plot needs at least one run directory")
    paths = [Path(r) for r in run_dirs]
    runs = [(p, read_progress(p)) for p in paths]
    # the environment's own metrics (info["metrics"], run.info_keywords) after the standard panels
    own = sorted({c for _, data in runs for c in data if c.startswith(ENV_METRIC_PREFIX)})
    candidates = [*PANELS, *((c, f"environment: {c[len(ENV_METRIC_PREFIX) :]}", False) for c in own)]
    panels = [
        p for p in candidates if any(p[0] in data and np.isfinite(data[p[0]]).any() for _, data in runs)
    ]
    if not panels:
        raise ValueError(
            "the progress files have none of the columns to plot: " + ", ".join(c for c, *_ in PANELS)
        )
    cols = 3 if len(panels) > 4 else 2
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.0 * rows + 0.6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax, (column, panel_title, log) in zip(axes, panels, strict=False):
        for run_dir, data in runs:
            if column not in data:
                continue
            x, y = data["timesteps"], data[column]
            keep = np.isfinite(x) & np.isfinite(y)
            if log:
                keep &= y > 0
            marker = "o" if column.startswith("eval_") else None  # a point per evaluation
            ax.plot(
                x[keep], y[keep], linewidth=1.4, marker=marker, markersize=3, label=_run_label(run_dir, paths)
            )
        ax.set_title(panel_title, fontsize=11)
        ax.set_xlabel("environment steps", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if len(runs) > 1 and handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(runs), 4), fontsize=9)
    fig.suptitle(title or ("learning curves" if len(runs) > 1 else _run_label(paths[0], paths)))
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, format="png")
    except OSError as exc:  # a full disk says "File too large" without the file: name it
        output.unlink(missing_ok=True)
        raise StorageError(
            exc.errno or 0, f"could not write {quoted(output)}: {exc.strerror or exc}"
        ) from None
    return output


def default_output(run_dirs: Sequence[str | Path]) -> Path:
    """``RUN_DIR/curves.png`` for one run; ``curves.png`` here for several."""
    return Path(run_dirs[0]) / "curves.png" if len(run_dirs) == 1 else Path("curves.png")


__all__ = ["PANELS", "default_output", "plot_runs", "read_progress"]
