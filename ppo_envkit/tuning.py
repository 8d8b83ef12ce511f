"""Hyperparameter search with Optuna: ``ppo-envkit tune ENV_ID`` and :func:`tune`.

Each trial trains the environment for ``steps_per_trial`` steps with settings drawn from
:data:`SEARCH_SPACE` (TPE sampling) on top of a base configuration (the defaults, or a
preset), evaluates it ``evaluations`` times on the way (deterministic episodes, fixed
seeds) and scores the last evaluation. A trial whose evaluation falls below the median
of earlier trials at the same step is pruned (Optuna's median pruner). The study lives
in an SQLite file, so an interrupted study goes on with ``resume=True``; trials run in
``jobs`` processes at once. At the end the best settings become a preset file that
``ppo-envkit train ENV_ID --preset NAME`` uses, and Optuna's plots are saved as PNG.

Needs the ``tune`` extra: ``pip install -e ".[tune]"`` (optuna).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import TrainConfig
from .errors import brief, quoted

#: The search space: setting -> ("log", low, high) for a log-uniform float, or a list of choices.
#: Hidden layers are written "64x64" (Optuna's choices must be plain values).
SEARCH_SPACE: dict[str, tuple[str, float, float] | list[Any]] = {
    "ppo.learning_rate": ("log", 1e-5, 3e-3),
    "ppo.n_steps": [32, 64, 128, 256, 512, 1024],
    "ppo.minibatch_size": [32, 64, 128, 256, 512],
    "ppo.n_epochs": [2, 4, 5, 10, 20],
    "ppo.gamma": [0.9, 0.95, 0.98, 0.99, 0.995, 0.999],
    "ppo.gae_lambda": [0.8, 0.9, 0.95, 0.98, 1.0],
    "ppo.clip_coef": [0.1, 0.2, 0.3],
    "ppo.ent_coef": ("log", 1e-8, 0.1),
    "policy.hidden_sizes": ["64x64", "128x128", "256x256"],
    "env.normalize_obs": [True, False],
    "env.normalize_reward": [True, False],
}
STUDY_FILE = "study.db"
#: Trial attributes: the process that ran it, and its error (one line) when it failed.
PID_ATTR, ERROR_ATTR = "pid", "error"


class StudyError(ValueError):
    """A study that cannot be opened or ended usefully (corrupt file, no trial completed); one line."""


@dataclass
class TuneSettings:
    """One study: what to tune and how long (everything a worker process needs, as data)."""

    env_id: str
    base: dict[str, Any]  # the base TrainConfig, dumped
    trials: int = 20
    steps_per_trial: int = 100_000
    evaluations: int = 10
    eval_episodes: int = 5
    jobs: int = 1
    seed: int = 0
    study_dir: str = "tune"
    study_name: str = "ppo-envkit"
    modules: tuple[str, ...] = ()
    enqueue: tuple[dict[str, Any], ...] = ()  # trials to try first (setting -> value)
    tuner_pid: int = 0  # the process the trial processes end with

    @property
    def storage(self) -> str:
        return f"sqlite:///{Path(self.study_dir).resolve() / STUDY_FILE}"


@dataclass
class TuneResult:
    best_value: float
    best_settings: dict[str, Any]
    trials: int
    pruned: int
    preset: Path | None
    study: Any


def sample_settings(trial: Any) -> dict[str, Any]:
    """Settings for one trial, drawn from :data:`SEARCH_SPACE`."""
    settings: dict[str, Any] = {}
    for key, space in SEARCH_SPACE.items():
        if isinstance(space, tuple):
            settings[key] = trial.suggest_float(key, space[1], space[2], log=True)
        else:
            settings[key] = trial.suggest_categorical(key, space)
    return to_config_values(settings)


def to_config_values(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's parameter values as settings (``"64x64"`` -> ``[64, 64]``)."""
    return {
        key: [int(w) for w in str(value).split("x")] if key == "policy.hidden_sizes" else value
        for key, value in params.items()
    }


def trial_config(settings: TuneSettings, values: dict[str, Any]) -> TrainConfig:
    """The configuration a trial trains with: base, sampled values, the trial's length and evaluations."""
    steps = settings.steps_per_trial
    fixed = {
        "env.id": settings.env_id,
        "run.total_timesteps": steps,
        "run.eval_interval": max(1, steps // settings.evaluations),
        "run.eval_episodes": settings.eval_episodes,
        "run.seed": settings.seed,
        "run.processes": 1,
        "run.run_dir": None,
    }
    return TrainConfig.model_validate(settings.base).with_overrides({**values, **fixed})


def _objective(settings: TuneSettings) -> Callable[[Any], float]:
    import optuna

    from .agent import PPO

    def objective(trial: Any) -> float:
        trial.set_user_attr(PID_ATTR, os.getpid())  # a killed trial process is told by it
        try:
            return run_trial(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # the trial fails (recorded, with its one-line error); the study goes on
            trial.set_user_attr(ERROR_ATTR, brief(exc, 300) or type(exc).__name__)
            raise

    def run_trial(trial: Any) -> float:
        config = trial_config(settings, sample_settings(trial))
        agent = PPO(config=config)
        pruned = False

        def report(agent: PPO, metrics: dict[str, float]) -> bool:
            nonlocal pruned
            if "eval_return" in metrics:
                trial.report(metrics["eval_return"], agent.num_timesteps)
                pruned = agent.num_timesteps < agent.target_timesteps and trial.should_prune()
            return not pruned

        try:  # a non-finite value, an environment's error: the trial fails (caught by optimize)
            agent.learn(settings.steps_per_trial, callback=report)
        finally:
            agent.close()
        if pruned:
            raise optuna.TrialPruned()
        return float(agent.last_metrics["eval_return"])

    return objective


def _sampler_and_pruner(settings: TuneSettings, worker: int = 0) -> tuple[Any, Any]:
    import optuna

    startup = max(3, min(10, settings.trials // 3))
    # each worker process draws its own random trials (the same seed would repeat them)
    sampler = optuna.samplers.TPESampler(n_startup_trials=startup, seed=settings.seed + worker)
    first_evaluation = max(1, settings.steps_per_trial // settings.evaluations)
    # Pruning starts with a trial's second evaluation, against the median of at least 2 trials.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=first_evaluation)
    return sampler, pruner


def open_study(settings: TuneSettings, resume: bool) -> Any:
    """The study in ``settings.study_dir``: new, or (``resume``) the interrupted one, whose
    trials that were running when it stopped are marked failed."""
    import optuna

    Path(settings.study_dir).mkdir(parents=True, exist_ok=True)
    exists = (Path(settings.study_dir) / STUDY_FILE).exists()
    if exists and not resume:
        raise FileExistsError(
            f"{quoted(settings.study_dir)} already holds a study; add --resume to go on with it"
        )
    if resume and not exists:
        raise FileNotFoundError(f"no study to resume in {quoted(settings.study_dir)}")
    sampler, pruner = _sampler_and_pruner(settings)
    path = Path(settings.study_dir) / STUDY_FILE
    if resume and path.stat().st_size == 0:
        raise StudyError(f"{quoted(path)} is empty: there is no study to resume (remove it to start anew)")
    try:
        study = optuna.create_study(
            study_name=settings.study_name,
            storage=settings.storage,
            direction="maximize",
            sampler=sampler,
            pruner=pruner,
            load_if_exists=resume,
        )
        stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    except Exception as exc:  # SQLAlchemy's and Optuna's many ways to say "not a study"
        raise StudyError(
            f"{quoted(path)} is not a study that can be resumed ({type(exc).__name__}: {brief(exc)}); "
            "move it away to start a new study"
        ) from None
    for trial in stale:  # running when the study stopped: failed
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    if not resume:
        for values in settings.enqueue:
            study.enqueue_trial(values)
    return study


def finished(study: Any) -> list[Any]:
    """Trials that ran to an end: complete, pruned or failed."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return study.get_trials(deepcopy=False, states=states)


def _worker(settings: TuneSettings, trials: int, worker: int) -> None:
    """One process of the study: ``trials`` trials, one after the other. It ends with the tuner
    and leaves terminal signals to it; a failed trial is recorded with its one-line error
    (Optuna's own report of it is a traceback, silenced)."""
    import optuna

    from .environments.discovery import cwd_importable, load_env_module
    from .parallel.lifeline import die_with_parent, ignore_terminal_signals

    die_with_parent(settings.tuner_pid or None)
    ignore_terminal_signals()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cwd_importable()
    for module in settings.modules:
        load_env_module(module)
    sampler, pruner = _sampler_and_pruner(settings, worker)
    study = optuna.load_study(
        study_name=settings.study_name, storage=settings.storage, sampler=sampler, pruner=pruner
    )
    study.optimize(_objective(settings), n_trials=trials, catch=(Exception,))


def start_workers(settings: TuneSettings, remaining: int) -> dict[Any, int]:
    """Processes that run ``remaining`` trials between them (fresh interpreters): process ->
    its number of trials."""
    jobs = max(1, min(settings.jobs, remaining))
    shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
    return {_start_worker(settings, share, worker): share for worker, share in enumerate(shares) if share}


def _start_worker(settings: TuneSettings, trials: int, worker: int) -> Any:
    proc = mp.get_context("spawn").Process(target=_worker, args=(settings, trials, worker), daemon=True)
    proc.start()
    return proc


def _replace_dead(settings: TuneSettings, study: Any, procs: dict[Any, int]) -> None:
    """A trial process that died (killed by the OOM killer, say): its running trial is recorded
    as failed, with how it died, and a new process runs the trials it had left."""
    import optuna

    from .parallel.lifeline import describe_exit

    for proc, share in list(procs.items()):
        if proc.is_alive() or not proc.exitcode:
            continue
        del procs[proc]
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(PID_ATTR) == proc.pid]
        how = f"its process died ({describe_exit(proc.exitcode)})"
        for trial in mine:
            if trial.state == optuna.trial.TrialState.RUNNING:
                study._storage.set_trial_user_attr(trial._trial_id, ERROR_ATTR, how)
                study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if not mine:  # died before its first trial: a replacement would die the same way
            raise StudyError(f"a trial process ended before its first trial: {how}")
        left = share - len(mine)
        if left > 0:  # its own sampler seed: the dead process's pid
            procs[_start_worker(settings, left, proc.pid)] = left


def write_preset(settings: TuneSettings, study: Any, name: str, folder: Path) -> Path:
    """The best trial's settings on top of the base, as a preset YAML in ``folder``."""
    best = study.best_trial
    values = to_config_values(best.params)
    config = trial_config(settings, values).with_overrides(
        {"run.eval_interval": "auto", "run.eval_episodes": TrainConfig().run.eval_episodes}
    )
    data = config.model_dump(mode="json")
    data["run"].pop("run_dir", None)
    described = ", ".join(f"{k}={v}" for k, v in values.items())
    header = {
        "description": (
            f"Tuned for {settings.env_id} by 'ppo-envkit tune' ({len(finished(study))} trials of "
            f"{settings.steps_per_trial} steps): best evaluation {best.value:.2f} (trial {best.number}). "
            f"Tuned: {described}."
        )
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**header, **data}, sort_keys=False))
    return path


def save_plots(study: Any, folder: Path) -> list[Path]:
    """Optuna's optimization history and parameter importances, as PNG files."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name, plot in (
        ("history", optuna_plots.plot_optimization_history),
        ("importances", optuna_plots.plot_param_importances),
    ):
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few complete trials to rank
            continue
        figure = axes.figure if hasattr(axes, "figure") else plt.gcf()
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def tune(
    env_id: str,
    base: TrainConfig | None = None,
    *,
    trials: int = 20,
    steps_per_trial: int = 100_000,
    evaluations: int = 10,
    eval_episodes: int = 5,
    jobs: int | None = None,
    seed: int = 0,
    study_dir: str | Path = "tune",
    preset_name: str | None = None,
    preset_dir: str | Path = "agents",
    resume: bool = False,
    modules: tuple[str, ...] = (),
    first_trials: tuple[dict[str, Any], ...] = (),
    on_trial: Callable[[Any], None] | None = None,
) -> TuneResult:
    """Run (or go on with) a study; returns the best settings and writes them as a preset.

    ``trials`` counts every trial that ended (complete, pruned or failed), resumed ones
    included. ``first_trials`` are settings to try first (setting -> value, in the forms of
    :data:`SEARCH_SPACE`), e.g. the settings in use now. ``modules`` are imported in the
    worker processes (default: the environment modules loaded here). ``on_trial(trial)``
    is called for each trial as it ends (the CLI prints a table row).
    """
    import time

    import optuna

    from .environments.discovery import user_modules
    from .io.rundir import RunDirLock

    base = base or TrainConfig()
    settings = TuneSettings(
        env_id=env_id,
        base=base.with_overrides({"env.id": env_id}).model_dump(),
        trials=trials,
        steps_per_trial=steps_per_trial,
        evaluations=evaluations,
        eval_episodes=eval_episodes,
        jobs=jobs or os.cpu_count() or 1,
        seed=seed,
        study_dir=str(study_dir),
        modules=tuple(modules) or tuple(user_modules()),
        enqueue=tuple(first_trials),
        tuner_pid=os.getpid(),
    )
    Path(study_dir).mkdir(parents=True, exist_ok=True)
    lock = RunDirLock(study_dir, what="study directory", holder="tuner", other="--study-dir")
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = open_study(settings, resume)
        shown = {t.number for t in finished(study)}
        procs = start_workers(settings, max(0, trials - len(shown)))
        try:
            while True:
                running = any(p.is_alive() for p in procs)
                _replace_dead(settings, study, procs)
                for trial in sorted(finished(study), key=lambda t: t.number):
                    if trial.number not in shown:
                        shown.add(trial.number)
                        if on_trial is not None:
                            on_trial(trial)
                if not running and not any(p.is_alive() for p in procs):
                    break
                time.sleep(0.5)
        finally:  # stopped (Ctrl-C, a signal) or done: no trial process outlives the tuner
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                proc.join(timeout=5)
        name = preset_name or f"{env_id.split('/')[-1].lower()}-tuned"
        return _result(settings, study, name, Path(preset_dir))
    finally:
        lock.release()


def _result(settings: TuneSettings, study: Any, name: str, preset_dir: Path) -> TuneResult:
    import optuna

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    if not completed:
        errors = [t.user_attrs.get(ERROR_ATTR) for t in sorted(finished(study), key=lambda t: t.number)]
        first = next((e for e in errors if e), None)
        raise StudyError(
            "no trial completed, so there is no preset to write"
            + (f"; the first failed trial: {first}" if first else "")
        )
    folder = Path(settings.study_dir)
    save_plots(study, folder)
    write_preset(settings, study, name, folder)
    preset = write_preset(settings, study, name, preset_dir)
    best = study.best_trial
    return TuneResult(
        best.value, to_config_values(best.params), len(finished(study)), len(pruned), preset, study
    )


__all__ = [
    "ERROR_ATTR",
    "SEARCH_SPACE",
    "StudyError",
    "TuneResult",
    "TuneSettings",
    "sample_settings",
    "tune",
]
