"""``ppo-envkit plot``: learning curves from progress.csv files, as a PNG."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from ppo_envkit.cli import main
from ppo_envkit.io.plot import PANELS, default_output, plot_runs, read_progress
from ppo_envkit.io.runlog import CSV_COLUMNS


def write_run(run_dir, rows: int = 12, columns=CSV_COLUMNS, seed: int = 0):
    """A run directory with a progress.csv in the format RunLogger writes."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    with open(run_dir / "progress.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for i in range(rows):
            row = {name: f"{rng.uniform(0.01, 1):.4g}" for name in columns}
            row.update(timesteps=(i + 1) * 2048, iteration=i + 1, episode_return=str(-100 + 25 * i))
            # the first updates have no finished episode yet: RunLogger leaves the cells empty
            if i < 2:
                row.update(episode_return="", episode_length="")
            writer.writerow({k: v for k, v in row.items() if k in columns})
    return run_dir


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_progress_gives_float_columns_with_nan_for_empty_cells(tmp_path):
    data = read_progress(write_run(tmp_path / "run"))
    assert set(CSV_COLUMNS) <= set(data)
    assert data["timesteps"].tolist() == [(i + 1) * 2048 for i in range(12)]
    assert math.isnan(data["episode_return"][0]) and data["episode_return"][2] == -50


def test_plot_writes_a_png_of_several_runs(tmp_path):
    runs = [write_run(tmp_path / "a", seed=1), write_run(tmp_path / "b", rows=5, seed=2)]
    out = plot_runs(runs, tmp_path / "out" / "curves.png", title="two runs", dpi=50)
    assert is_png(out)
    width, height = Image.open(out).size
    assert width > 3 * 4 * 50 and height > 3 * 2.5 * 50  # a 3 x 3 grid of panels


def test_plot_leaves_out_panels_without_data(tmp_path):
    # an older progress file: return, length and losses only
    old = write_run(tmp_path / "old", columns=["timesteps", "episode_return", "episode_length", "value_loss"])
    out = plot_runs([old], tmp_path / "old.png", dpi=50)
    width, height = Image.open(out).size
    full = Image.open(plot_runs([write_run(tmp_path / "full")], tmp_path / "full.png", dpi=50)).size
    assert width < full[0] and height < full[1]  # 2 x 2 panels instead of 3 x 3
    assert {c for c, *_ in PANELS} <= set(CSV_COLUMNS)  # every panel is a column RunLogger writes


def test_plot_command(tmp_path, capsys):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    out = tmp_path / "both.png"
    assert main(["plot", str(a), str(b), "-o", str(out)]) == 0
    assert is_png(out) and f"wrote {out}" in capsys.readouterr().err.replace("\n", "")
    assert main(["plot", str(a)]) == 0  # one run: RUN_DIR/curves.png by default
    assert is_png(a / "curves.png")
    assert default_output([a, b]).name == "curves.png" and not default_output([a, b]).parent.name


@pytest.mark.parametrize(
    ("setup", "message", "code"),
    [
        ("missing", "no progress.csv in", 1),
        ("empty", "has no rows yet", 1),
        ("jpg", "ending in .png", 2),
    ],
)
def test_plot_errors_are_one_line(setup, message, code, tmp_path, capsys):
    run = tmp_path / "run"
    out = tmp_path / "x.png"
    if setup == "empty":
        write_run(run, rows=0)
    elif setup == "jpg":
        write_run(run)
        out = tmp_path / "x.jpg"
    assert main(["plot", str(run), "-o", str(out)]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
