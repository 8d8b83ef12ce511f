"""``ppo-envkit tune ENV_ID``: search for better settings with Optuna; the best become a preset."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from ..errors import ConfigError, quoted
from .common import add_env_module_arg, add_set_arg, console, load_user_envs, out
from .train import say, stop_like_ctrl_c

NAME = "tune"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="search for better settings (Optuna); the best become a preset",
        description="Train ENV_ID with settings drawn by Optuna's TPE sampler, prune weak trials "
        "from their evaluations, and write the best settings as a preset (agents/NAME.yaml) that "
        "'ppo-envkit train ENV_ID --preset NAME' uses. Needs: pip install -e '.[tune]'.",
    )
    p.add_argument("env_id", help="environment id")
    p.add_argument("--trials", type=int, default=20, help="trials in the study, resumed ones included (20)")
    p.add_argument("--steps-per-trial", type=int, default=100_000, help="training steps per trial (100000)")
    p.add_argument("--evaluations", type=int, default=10, help="evaluations per trial, for pruning (10)")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (5)")
    p.add_argument(
        "--jobs", type=int, default=None, help="trials at once, in processes (default: one per core)"
    )
    p.add_argument("--study-dir", help="where the study, plots and preset go (default: tune/ENV)")
    p.add_argument("--resume", action="store_true", help="go on with the study in --study-dir")
    p.add_argument("--name", help="preset name to write (default: ENV-tuned)")
    p.add_argument("--preset", help="base settings: a preset (default: the defaults)")
    p.add_argument("--config", help="base settings: a YAML file")
    add_set_arg(p, "a base setting (repeatable); tuned settings replace it")
    p.add_argument("--action-space", choices=["discrete", "continuous"], help="the environment's variant")
    p.add_argument("--seed", type=int, default=0, help="seed of the trials and of the sampler")
    add_env_module_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..cli.train import resolve_train_config

    for flag in ("trials", "steps_per_trial", "evaluations", "eval_episodes"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("tune needs optuna: pip install -e '.[tune]'")
    load_user_envs(args.env_module)
    for flag in ("total_timesteps", "num_envs", "processes", "device", "run_dir"):
        setattr(args, flag, None)
    config, preset = resolve_train_config(args)
    env_id = config.env.id
    study_dir = Path(args.study_dir or Path("tune") / env_id.replace("/", "_"))
    console.print(
        f"tuning {env_id}: {args.trials} trials of {args.steps_per_trial} steps, base: "
        f"{preset or args.config or 'the defaults'}; study in {quoted(study_dir)}"
    )
    printer = _TrialPrinter()
    started = time.perf_counter()
    restore_signals = stop_like_ctrl_c()  # SIGTERM, SIGHUP: stop the study as Ctrl-C does
    try:
        result = _tune(args, env_id, config, study_dir, printer)
        restore_signals()
    except KeyboardInterrupt:
        again = [*args.argv, *(["--resume"] if not args.resume else [])]
        if not args.study_dir:
            again += ["--study-dir", str(study_dir)]
        say(
            f"[yellow]interrupted[/]: the study is saved in {quoted(study_dir)} (trials that were "
            "running count as failed)",
            "continue with: ppo-envkit " + " ".join(quoted(a) for a in again),
        )
        return 130
    name = result.preset.stem if result.preset else "?"
    console.print(
        f"done: {result.trials} trials ({result.pruned} pruned) in {time.perf_counter() - started:.0f}s; "
        f"best evaluation {result.best_value:.2f}"
    )
    console.print(f"best settings: {escape(str(result.best_settings))}")
    console.print(f"preset written to {quoted(result.preset)}; plots and study in {quoted(study_dir)}")
    console.print(f"train with it: ppo-envkit train {quoted(args.env_id)} --preset {quoted(name)}")
    return 0


def _tune(args: argparse.Namespace, env_id: str, config: Any, study_dir: Path, printer: Any) -> Any:
    from ..tuning import tune

    return tune(
        env_id,
        config,
        trials=args.trials,
        steps_per_trial=args.steps_per_trial,
        evaluations=args.evaluations,
        eval_episodes=args.eval_episodes,
        jobs=args.jobs,
        seed=args.seed,
        study_dir=study_dir,
        preset_name=args.name,
        resume=args.resume,
        on_trial=printer,
    )


class _TrialPrinter:
    """A table row per finished trial (plain lines when the output is not a terminal)."""

    COLUMNS = ("trial", "state", "value", "seconds", "learning_rate", "n_steps", "minibatch", "epochs")

    def __init__(self) -> None:
        self.console = out()
        self.first = True

    def __call__(self, trial: Any) -> None:
        from rich.table import Table

        params = trial.params
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0
        )
        value = "" if trial.value is None else f"{trial.value:.2f}"
        row = [
            str(trial.number),
            trial.state.name.lower(),
            value,
            f"{duration:.0f}",
            f"{params.get('ppo.learning_rate', float('nan')):.2e}",
            str(params.get("ppo.n_steps", "")),
            str(params.get("ppo.minibatch_size", "")),
            str(params.get("ppo.n_epochs", "")),
        ]
        if not sys.stdout.isatty():
            self.console.print("  ".join(f"{c}={v}" for c, v in zip(self.COLUMNS, row, strict=True)))
            self._error(trial)
            return
        table = Table(show_header=self.first, box=None, padding=(0, 1))
        for column in self.COLUMNS:
            table.add_column(column, justify="right", min_width=max(len(column), 9))
        table.add_row(*row)
        self.console.print(table)
        self.first = False
        self._error(trial)

    def _error(self, trial: Any) -> None:
        from ..tuning import ERROR_ATTR

        error = trial.user_attrs.get(ERROR_ATTR)
        if error and trial.state.name == "FAIL":
            self.console.print(f"  trial {trial.number} failed: {escape(error)}", soft_wrap=True)
