"""Weights & Biases as one more sink of the run logger (``run.wandb``): the metrics that
TensorBoard gets (same names, x axis: training steps), the resolved settings as the run's
config, and the evaluation videos (``run.eval_video``). An optional extra:
``pip install 'ppo-envkit[wandb]'``. ``WANDB_MODE=offline`` logs into ``RUN_DIR/wandb/``
without a network (``wandb sync`` uploads later)."""

from __future__ import annotations

import math
from pathlib import Path

from ..config import TrainConfig
from ..errors import ConfigError

#: The project of runs that name none.
DEFAULT_PROJECT = "ppo-envkit"


class WandbSink:
    def __init__(self, config: TrainConfig, run_dir: Path | None, *, resume: bool = False):
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "run.wandb=true needs the wandb package: pip install 'ppo-envkit[wandb]' "
                "(or pip install wandb)"
            ) from None
        self._wandb = wandb
        run = config.run
        directory = None
        if run_dir is not None:
            directory = str(run_dir)
        # One W&B run per run directory: a resumed run goes on with the same W&B run.
        run_id = _run_id(run_dir) if run_dir is not None else None
        self.run = wandb.init(
            project=run.wandb_project or DEFAULT_PROJECT,
            entity=run.wandb_entity,
            group=run.wandb_group,
            tags=list(run.wandb_tags) or None,
            config=config.model_dump(mode="json"),
            dir=directory,
            id=run_id,
            resume="allow" if resume else None,
            name=Path(run_dir).name if run_dir is not None else None,
        )
        self.run.define_metric("*", step_metric="global_step")

    def log(self, scalars: dict[str, float], step: int) -> None:
        data = {k: v for k, v in scalars.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        data["global_step"] = step
        self.run.log(data)

    def log_video(self, tag: str, path: Path, step: int) -> None:
        self.run.log({tag: self._wandb.Video(str(path), format=path.suffix.lstrip(".")), "global_step": step})

    def close(self) -> None:
        self.run.finish()


def _run_id(run_dir: Path) -> str:
    """The run directory's W&B id, kept in ``RUN_DIR/wandb_id`` (made on first use)."""
    import uuid

    path = Path(run_dir) / "wandb_id"
    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if existing:
        return existing
    new = uuid.uuid4().hex[:12]
    path.write_text(new + "\n")
    return new


__all__ = ["DEFAULT_PROJECT", "WandbSink"]
