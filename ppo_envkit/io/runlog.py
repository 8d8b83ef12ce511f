"""Training output: a progress bar, ``progress.csv``, TensorBoard events, checkpoints.

A run directory holds:

* ``config.yaml``: the resolved settings;
* ``progress.csv``: one row per iteration (steps, returns, losses, KL, SPS, ...);
* ``tb/``: TensorBoard event files with the same scalars;
* ``checkpoints/step_NNNNNNNNNN/``: periodic checkpoints (agent + trainer state);
* ``agent/``: the final agent directory;
* ``best/``: the agent of the best evaluation so far (``run.eval_interval``);
* ``videos/eval_NNNNNNNNNN.mp4``: an evaluation episode after each evaluation (``run.eval_video``),
  also in TensorBoard (``eval/video``, Images tab);
* ``wandb/``: the Weights & Biases run (``run.wandb``), which gets the same metrics, the
  settings and the videos.
"""

from __future__ import annotations

import csv
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..config import TrainConfig
from ..errors import RunDirError, StorageError, quoted
from ..state import TrainingState
from .atomic import atomic_write_dir, discard_dir
from .checkpoint import BEST_AGENT_DIR, CHECKPOINTS_DIR, FINAL_AGENT_DIR, checkpoint_dirs
from .rundir import RunDirLock, existing_run, recover


def return_decimals(*values: float) -> int:
    """Decimals that show the smallest non-zero magnitude among ``values`` to three significant
    digits (2 at least, 6 at most): returns of 0.955 and 0.99 are not both printed as 1.0, and a
    spread of 0.004 is not printed as 0.00. A magnitude below a billionth of the largest is
    rounding noise (the spread of equal returns computed as 1e-17), not a digit to show."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    largest = max(finite, default=0.0)
    magnitudes = [m for m in finite if m > 1e-9 * largest]
    if not magnitudes:
        return 2
    return min(6, max(2, 2 - math.floor(math.log10(min(magnitudes)))))


class TrainingRun(Protocol):
    """What the logger reads of a training run (the trainer): settings, state and files."""

    @property
    def config(self) -> TrainConfig: ...

    state: TrainingState

    def agent_files(self) -> dict[str, Any]: ...

    def checkpoint_files(self) -> dict[str, Any]: ...


CSV_COLUMNS = [
    "timesteps",
    "iteration",
    "time_elapsed",
    "episode_return",
    "episode_length",
    "episodes",
    "eval_return",
    "eval_return_std",
    "eval_length",
    "eval_win_rate",
    "selfplay_rating",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "learning_rate",
    "action_std",
    "gradient_steps",
    "stopped_early",
    "sps",
    "collect_sps",
]
#: Metrics named ``metrics/KEY`` are the environment's own (``info["metrics"]``,
#: ``run.info_keywords``): columns added to ``progress.csv`` when they first appear.
ENV_METRIC_PREFIX = "metrics/"
#: The environment's metrics shown on the progress bar (the first ones, by name).
PROGRESS_METRICS = 3


class RunLogger:
    """Writes a run directory (when given) and shows progress (when asked)."""

    def __init__(
        self,
        run_dir: str | Path | None,
        *,
        progress: bool = True,
        console: Console | None = None,
        tensorboard: bool = True,
        checkpoint_interval: int = 0,
        keep_checkpoints: int = 3,
        resume: bool = False,
    ):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.console = console or Console(stderr=True)
        self.checkpoint_interval = checkpoint_interval
        self.keep_checkpoints = keep_checkpoints
        self.started = time.perf_counter()
        self.elapsed_before = 0.0
        self._progress: Progress | None = None
        self._task = None
        self._show_progress = progress
        self._last_plain = 0.0
        self._csv_file = None
        self._csv: csv.DictWriter | None = None
        self._columns = list(CSV_COLUMNS)
        self._tb = None
        self._tb_purge_step: int | None = None
        self._last_eval = "-"
        self._next_checkpoint = None
        self._resume = resume
        self._tensorboard = tensorboard
        self._lock: RunDirLock | None = None
        self._wandb: Any = None
        #: Seconds spent writing each video (``log_video``).
        self.video_seconds: list[float] = []
        if self.run_dir is not None:
            self._claim(self.run_dir)

    def _claim(self, run_dir: Path) -> None:
        """Create and lock the run directory; refuse one that holds another run (unless resuming);
        finish what kills interrupted there."""
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot create the run directory {quoted(run_dir)}: {exc.strerror}"
            raise StorageError(exc.errno, message) from None
        self._lock = RunDirLock(run_dir)
        if self._lock.previous_owner is not None:
            self.console.print(
                f"taking over {quoted(run_dir)}: the run that held it (process {self._lock.previous_owner}) "
                "is no longer running"
            )
        held = None if self._resume else existing_run(run_dir)
        if held is not None:
            self._lock.release()
            raise RunDirError(
                f"run directory {quoted(run_dir)} already holds a run ({held}): continue it with "
                f"`ppo-envkit train --resume {quoted(run_dir)}`, or choose another --run-dir"
            )
        for line in recover(run_dir):
            self.console.print(line)

    # ---------------------------------------------------------------- progress display

    def report(self, text: str) -> None:
        """One line for the user (rich markup allowed)."""
        self.console.print(text)

    def start(self, run: TrainingRun) -> None:
        state, config = run.state, run.config
        self.started = time.perf_counter()
        if config.run.wandb and self._wandb is None:  # first: without wandb, nothing written
            from .wandb_sink import WandbSink

            self._wandb = WandbSink(config, self.run_dir, resume=self._resume)
        if self.run_dir is not None and self._csv is None:
            config.save_yaml(self.run_dir / "config.yaml")
            self._open_outputs(state.num_timesteps)
        if self.checkpoint_interval:
            done = state.num_timesteps
            self._next_checkpoint = (done // self.checkpoint_interval + 1) * self.checkpoint_interval
        if not self._show_progress:
            return
        if self.console.is_terminal or _notebook_bar(self.console):
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[sps]:>6} steps/s"),
                TextColumn("return {task.fields[ret]}"),
                TextColumn("eval {task.fields[evl]}"),
                TextColumn("{task.fields[env]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                config.env.id,
                total=state.target_timesteps,
                completed=state.num_timesteps,
                sps="-",
                ret="-",
                evl="-",
                env="",
            )
        else:
            self.console.print(f"training {config.env.id} to {state.target_timesteps} steps")

    def log_iteration(self, run: TrainingRun, metrics: dict[str, float]) -> None:
        state = run.state
        elapsed = self.elapsed_before + time.perf_counter() - self.started
        row = {
            "timesteps": state.num_timesteps,
            "iteration": state.iteration,
            "time_elapsed": round(elapsed, 3),
        }
        row.update({k: _fmt(v) for k, v in metrics.items()})
        new = [k for k in metrics if k.startswith(ENV_METRIC_PREFIX) and k not in self._columns]
        if new and self._csv is not None:
            self._add_columns(new)
        if self._csv is not None:
            self._csv.writerow(row)
            self._csv_file.flush()
        writer = self._tensorboard_writer()
        if writer is not None:
            for key, value in metrics.items():
                name = _tb_name(key)
                if name is not None and isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(name, value, state.num_timesteps)
        if self._wandb is not None:
            named = {_tb_name(k): v for k, v in metrics.items()}
            self._wandb.log({k: v for k, v in named.items() if k is not None}, state.num_timesteps)
        ret = metrics.get("episode_return", float("nan"))
        ret_text = "-" if not math.isfinite(ret) else f"{ret:8.{return_decimals(ret)}f}"
        evaluated = "eval_return" in metrics
        if evaluated:
            places = return_decimals(metrics["eval_return"], metrics["eval_return_std"])
            self._last_eval = f"{metrics['eval_return']:.{places}f}"
            eval_std = f"{metrics['eval_return_std']:.{places}f}"
            if metrics.get("eval_best"):
                self._save_best(run)
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=min(state.num_timesteps, state.target_timesteps),
                sps=f"{metrics['sps']:.0f}",
                ret=ret_text,
                evl=self._last_eval,
                env=_env_metrics_text(metrics),
            )
        elif self._show_progress and evaluated:
            best = " (best so far)" if metrics.get("eval_best") else ""
            # the final evaluation plays more episodes than the periodic ones, and says how many
            episodes = int(metrics.get("eval_episodes", run.config.run.eval_episodes))
            self.console.print(
                f"evaluation at step {state.num_timesteps}: mean return {self._last_eval} "
                f"+- {eval_std} over {episodes} episodes{best}"
            )
        elif self._show_progress and time.perf_counter() - self._last_plain > 10:
            self._last_plain = time.perf_counter()
            self.console.print(
                f"steps {state.num_timesteps}/{state.target_timesteps}  {metrics['sps']:.0f} steps/s  "
                f"return {ret_text.strip()}  {_env_metrics_text(metrics)}  elapsed {elapsed:.0f}s"
            )
        if self._next_checkpoint is not None and state.num_timesteps >= self._next_checkpoint:
            self.save_checkpoint(run)
            while self._next_checkpoint <= state.num_timesteps:
                self._next_checkpoint += self.checkpoint_interval

    def _open_outputs(self, timesteps: int) -> None:
        """Open ``progress.csv`` for appending. On resume, rows written after the checkpoint
        describe lost work: the file is rewritten without them first, into a temporary file
        that replaces it (a kill leaves the old file or the new one, never a partial one)."""
        assert self.run_dir is not None
        path = self.run_dir / "progress.csv"
        rows = _read_rows(path) if self._resume else []
        self._columns = list(CSV_COLUMNS)
        for row in rows[:1]:  # the environment's metric columns of the run so far
            self._columns += [k for k in row if k.startswith(ENV_METRIC_PREFIX) and k not in self._columns]
        kept = [r for r in rows if _int(r.get("timesteps")) <= timesteps]
        self.elapsed_before = _float(kept[-1].get("time_elapsed")) if kept else 0.0
        if not self._resume or len(kept) != len(rows) or not path.exists():
            self._rewrite(path, kept)
        self._csv_file = open(path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=self._columns, extrasaction="ignore")
        self._tb_purge_step = timesteps + 1 if self._resume else None

    def _rewrite(self, path: Path, rows: list[dict[str, Any]]) -> None:
        """``path`` holding ``rows`` under the current columns, through a temporary file that
        replaces it (a kill leaves the old file or the new one, never a partial one)."""
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _add_columns(self, names: list[str]) -> None:
        """New environment metrics: ``progress.csv`` rewritten with their columns (empty in the
        rows before), then appended to as before."""
        assert self.run_dir is not None and self._csv_file is not None
        path = self.run_dir / "progress.csv"
        self._csv_file.close()
        rows = _read_rows(path)
        self._columns += names
        self._rewrite(path, rows)
        self._csv_file = open(path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=self._columns, extrasaction="ignore")

    def _tensorboard_writer(self) -> Any:
        """TensorBoard's writer, opened with the first logged iteration (its imports take ~40 ms,
        which need not delay the first environment step)."""
        if self._tb is None and self._tensorboard and self._csv is not None:
            from torch.utils.tensorboard import SummaryWriter

            assert self.run_dir is not None
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=self._tb_purge_step)
        return self._tb

    def log_video(self, tag: str, frames: list[Any], fps: float, step: int) -> Path | None:
        """An episode's frames (RGB uint8) as ``RUN_DIR/videos/eval_STEP.mp4``, a TensorBoard
        video (``tag``) and a W&B video; the file's path (None without a run directory)."""
        if self.run_dir is None:
            return None
        from .media import tensorboard_video, write_mp4

        started = time.perf_counter()
        path = write_mp4(self.run_dir / "videos" / f"eval_{step:010d}.mp4", frames, fps)
        writer = self._tensorboard_writer()
        if writer is not None:
            tensorboard_video(writer, tag, frames, fps, step)
        if self._wandb is not None:
            self._wandb.log_video(tag, path, step)
        self.video_seconds.append(time.perf_counter() - started)
        return path

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self, run: TrainingRun) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir / CHECKPOINTS_DIR / f"step_{run.state.num_timesteps:010d}"
        atomic_write_dir(path, run.checkpoint_files())
        for old in checkpoint_dirs(self.run_dir)[: -self.keep_checkpoints]:
            discard_dir(old)  # renamed away first: never half-deleted under its name
        return path

    def _save_best(self, run: TrainingRun) -> None:
        """The agent of the best evaluation so far, as an agent directory (atomic)."""
        if self.run_dir is not None:
            atomic_write_dir(self.run_dir / BEST_AGENT_DIR, run.agent_files())

    def finish(self, run: TrainingRun) -> None:
        if self.run_dir is not None:
            self.save_checkpoint(run)
            atomic_write_dir(self.run_dir / FINAL_AGENT_DIR, run.agent_files())
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
            self._csv = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _notebook_bar(console: Console) -> bool:
    """Whether a live progress bar can show in this notebook: rich draws it in Jupyter through
    ipywidgets (without it, the plain progress lines)."""
    if not console.is_jupyter:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


_TB_GROUPS = {
    "episode_return": "rollout/episode_return",
    "episode_length": "rollout/episode_length",
    "eval_return": "eval/return",
    "eval_return_std": "eval/return_std",
    "eval_length": "eval/episode_length",
    "eval_best": None,
    "eval_win_rate": "eval/win_rate_vs_random",
    "eval_win_rate_first": "eval/win_rate_vs_random_first_seat",
    "eval_win_rate_second": "eval/win_rate_vs_random_second_seat",
    "eval_illegal_moves": "eval/illegal_moves",
    "selfplay_rating": "selfplay/rating",
    "selfplay_pool_size": "selfplay/pool_size",
    "sps": "time/sps",
    "collect_sps": "time/collect_sps",
    "eval_seconds": "time/eval_seconds",
}


def _tb_name(key: str) -> str | None:
    if key.startswith(ENV_METRIC_PREFIX):
        return key  # the environment's own, in their own group
    return _TB_GROUPS.get(key, f"train/{key}")


def _env_metrics_text(metrics: dict[str, float]) -> str:
    """The first few of the environment's metrics, for the progress display."""
    shown = [(k[len(ENV_METRIC_PREFIX) :], v) for k, v in metrics.items() if k.startswith(ENV_METRIC_PREFIX)]
    return "  ".join(f"{k} {v:.3g}" for k, v in shown[:PROGRESS_METRICS] if math.isfinite(v))


def _int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def _float(value: str | None) -> float:
    try:
        return float(value or 0.0)
    except ValueError:
        return 0.0


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of ``progress.csv`` (a row torn by a kill has too few or too many fields)."""
    try:
        with open(path, newline="") as fh:
            return [r for r in csv.DictReader(fh) if None not in r and None not in r.values()]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
