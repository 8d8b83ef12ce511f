"""The ``PPO`` agent: the public face of the library, and little else.

It holds what an agent *is*: its settings, policy (weights and normalization statistics),
random generator and :class:`~ppo_envkit.state.TrainingState` (counters, plan, provenance).
Acting goes through :mod:`ppo_envkit.algo.acting`; training is delegated to a
:class:`~ppo_envkit.algo.trainer.Trainer` (collector, learner, loop) built on first use and
kept between calls, which owns the state while it trains; which processes train together
is :class:`~ppo_envkit.parallel.group.TrainingGroup`'s decision; files are
:mod:`ppo_envkit.io.checkpoint`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces

from .algo import acting
from .algo.acting import EpisodeActor
from .algo.callbacks import Callback, CallbackList
from .algo.encoders import encoder_kind
from .algo.evaluator import EvalResult, Evaluator
from .algo.policy import ActorCritic, resolve_device
from .algo.trainer import Trainer
from .config import TrainConfig, with_image_defaults
from .environments.agent_stack import agent_spaces
from .environments.factory import make_configured_env
from .environments.lookup import env_info
from .errors import brief
from .io import checkpoint as ckpt
from .io.atomic import atomic_write_dir
from .parallel import copies_per_rank
from .parallel.group import TrainingGroup
from .spaces import ObsFlattener, require_fits, space_from_data
from .state import TrainingState

if TYPE_CHECKING:
    from .io.runlog import RunLogger

#: ``callback(agent, metrics)``, after every training iteration; returning False stops.
MetricsCallback = Callable[["PPO", dict[str, float]], Any]
#: What ``learn``/``train`` take as ``callback``: a :class:`~ppo_envkit.algo.callbacks.Callback`
#: (or a list of them), or a plain ``callback(agent, metrics)`` function.
AnyCallback = Callback | list[Callback] | MetricsCallback
#: An actor that keeps a recurrent policy's state between calls (see :meth:`PPO.stateful`).
StatefulActor = EpisodeActor


class PPO:
    """Proximal Policy Optimization with a head chosen from the action space.

    ``PPO("LunarLander-v3", config=TrainConfig(...))`` or ``PPO.from_preset("lunarlander")``;
    then :meth:`learn`, :meth:`predict`, :meth:`save`, :meth:`load`.
    """

    def __init__(
        self,
        env: str | None = None,
        config: TrainConfig | None = None,
        *,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        device: str | None = None,
    ):
        config = config if config is not None else TrainConfig()
        if env is not None and env != config.env.id:
            config = config.with_overrides({"env.id": env})
        if device is not None:
            config = config.with_overrides({"run.device": device})
        #: The settings; a new value takes effect at the next training call, where only what
        #: :mod:`ppo_envkit.live_settings` allows may differ from the settings trained with.
        self.config = config
        self.device = resolve_device(config.run.device)
        if observation_space is None or action_space is None:
            probe = make_configured_env(config.env)
            observation_space, action_space = probe.observation_space, probe.action_space
            layout = agent_spaces(probe)  # several agents: the policy acts for one agent (a row)
            if layout is not None:
                observation_space, action_space = layout.observation_space, layout.action_space
            probe.close()
        self.observation_space, self.action_space = observation_space, action_space
        #: The IMAGE_DEFAULTS keys that replaced library defaults (the policy sees images and
        #: the settings left them unset); [] otherwise
        self.image_defaults: list[str] = []
        images = ObsFlattener(observation_space, images=config.policy.image_encoder != "none").images()
        if images:
            kinds = {encoder_kind(config.policy.image_encoder, layout) for _, layout in images}
            config, self.image_defaults = with_image_defaults(
                config, "nature" if "nature" in kinds else "small"
            )
            self.config = config
        threads = config.run.torch_threads
        if threads is None:  # the default: 1 (convolutions too: all-core threads wait for each other
            threads = 1  # on a busy machine; 11x slower here under load; run.processes uses the cores)
        if threads:
            torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.run.seed)
            self.policy = ActorCritic(
                observation_space, action_space, config.policy, config.env, config.ppo.gamma
            )
        self.policy.to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.run.seed)
        #: Counters, plan and provenance: read them here; the trainer writes them.
        self.state = TrainingState(
            target_timesteps=config.run.total_timesteps,
            action_names=self._fitting_names(env_info(config.env.id).action_names),
        )
        self.path: Path | None = None  # where load() found the agent
        self._trainer: Trainer | None = None
        self._group = TrainingGroup(self)

    # ----------------------------------------------------------------------------- state, read

    @property
    def num_timesteps(self) -> int:
        """Environment steps trained (over every rank)."""
        return self.state.num_timesteps

    @property
    def iteration(self) -> int:
        """Updates done."""
        return self.state.iteration

    @property
    def target_timesteps(self) -> int:
        """The step count the current run trains to (see :meth:`train`)."""
        return self.state.target_timesteps

    @property
    def last_metrics(self) -> dict[str, float]:
        """The metrics of the last training iteration (losses, returns, evaluation, speed)."""
        return self.state.last_metrics

    @property
    def action_names(self) -> list[str] | None:
        """Names of the discrete actions (registered, or stored with the agent), when they fit the space."""
        return self.state.action_names

    def _fitting_names(self, names: Any) -> list[str] | None:
        if names and isinstance(self.action_space, spaces.Discrete) and len(names) == self.action_space.n:
            return [str(n) for n in names]
        return None

    def record_provenance(self, **provenance: Any) -> None:
        """Record how this agent's run was started (kept in ``agent.json``; the command line
        records its command, preset and seed)."""
        self.state.provenance = {**(self.state.provenance or {}), **provenance}

    @classmethod
    def from_preset(
        cls,
        name: str,
        env: str | None = None,
        overrides: dict[str, Any] | list[str] | None = None,
        **kwargs: Any,
    ) -> PPO:
        """An agent configured by a preset from ``agents/`` (``cartpole``, ``lunarlander``, ...)."""
        from .presets import load_preset

        config = load_preset(name)
        if overrides:
            config = config.with_overrides(overrides)
        return cls(env, config=config, **kwargs)

    # ----------------------------------------------------------------------------- acting

    def predict(
        self,
        obs: Any,
        deterministic: bool = True,
        action_mask: Any = None,
        state: np.ndarray | None = None,
        episode_start: Any = None,
    ) -> Any:
        """Action(s) for raw environment observation(s), in the environment's format.

        A single observation gives a single action; a batch gives a batch. ``action_mask``
        (one per observation, the layout of :mod:`ppo_envkit.environments.masks`: what
        ``action_masks()`` or ``info["action_mask"]`` give) restricts the choice to legal actions.

        A recurrent policy (``policy.recurrent``) returns ``(action, state)``: pass the state
        back with the next observation, and ``episode_start`` (True where an episode begins:
        the state is reset before that step). ``state=None`` starts every episode afresh.
        :meth:`stateful` keeps the state for you.
        """
        return acting.predict(
            self.policy, self.generator, obs, deterministic, action_mask, state, episode_start
        )

    def stateful(self, deterministic: bool = True) -> EpisodeActor:
        """An actor that keeps a recurrent policy's state between calls (any policy works)."""
        return EpisodeActor(self.policy, self.generator, deterministic)

    def policy_step(
        self, obs: Any, deterministic: bool = True, action_mask: Any = None, state: np.ndarray | None = None
    ) -> dict[str, Any]:
        """One single-observation decision with what the policy thinks (for viewers); for a
        recurrent policy from ``state`` (None: an episode's start), with the new ``state``."""
        memory = acting.user_memory(self.policy, state, None, 1) if self.policy.recurrent else None
        decision = self.policy.decide(
            obs, deterministic, self.generator, action_mask=action_mask, memory=memory
        )
        decision["state"] = None if memory is None else memory.state[0].cpu().numpy()
        return decision

    def evaluate(
        self, episodes: int = 10, *, deterministic: bool = True, seed: int = 0, num_envs: int | None = None
    ) -> EvalResult:
        """Play ``episodes`` full episodes with the agent's stored normalization statistics
        (split evenly over at most ``num_envs`` copies, without the short-episode bias).

        Stochastic actions are drawn from a generator of the evaluation's own, seeded with
        ``seed`` (as the evaluations during training are): the same call gives the same result
        whatever the agent did before, and evaluating between two ``learn`` calls leaves the
        training's random stream, hence its weights, as they would have been."""
        evaluator = Evaluator(self.config.env, episodes, num_envs, self.config.run.info_keywords)
        try:
            return evaluator.run(
                self.policy,
                torch.Generator(device=self.device).manual_seed(seed),
                deterministic=deterministic,
                seed=seed,
                trained_with_masks=self.state.action_masks,
            )
        finally:
            evaluator.close()

    @property
    def trained_by_self_play(self) -> bool:
        """Whether this agent's training copies are a turn-based game (a PettingZoo ``AECEnv``,
        learnt by self-play); False before training has built them."""
        return self._trainer is not None and self._trainer.collector.turn_based

    def play(self, opponent: Any = "random", games: int = 100, *, seed: int = 0, run_dir: Any = None) -> Any:
        """Turn-based games: wins, draws and losses from each seat over ``games`` games per seat
        against ``opponent``: ``"random"`` (a random legal player), ``"pool"`` (the snapshot pool
        of ``run_dir``, or of the run this agent was loaded from), ``"module:function"`` (a
        callable ``opponent(observation, action_mask, rng) -> action``), an agent directory or a
        ``PPO`` agent (which samples), or any such callable. Returns a ``GameResult``
        (``.to_dict()``, ``.line()``); see :mod:`ppo_envkit.algo.games`."""
        from pathlib import Path as _Path

        from .algo.games import play_games, resolve_opponent
        from .algo.selfplay import SnapshotPlayer, snapshot_payload

        name = opponent if isinstance(opponent, str) else type(opponent).__name__
        if isinstance(opponent, str) and opponent not in ("random", "pool") and _Path(opponent).exists():
            opponent = PPO.load(opponent, device="cpu")
        if isinstance(opponent, PPO):
            players = [SnapshotPlayer(snapshot_payload(opponent.policy))]
            name = str(opponent.path or "agent")
        elif isinstance(opponent, str):
            if run_dir is None and opponent == "pool" and self.path is not None:
                here = _Path(self.path)
                run_dir = here.parent.parent if here.parent.name == "checkpoints" else here.parent
            players = resolve_opponent(opponent, self.config.env, run_dir, self.config.selfplay.pool_size)
        else:
            players = [opponent]
        return play_games(self.policy, self.config.env, players, games, seed=seed, name=name)

    # ----------------------------------------------------------------------------- training

    def learn(
        self,
        total_timesteps: int | None = None,
        *,
        callback: AnyCallback | None = None,
        logger: RunLogger | None = None,
        progress_bar: bool = False,
    ) -> PPO:
        """Train for ``total_timesteps`` more environment steps (default: ``run.total_timesteps``).

        ``callback``: a :class:`~ppo_envkit.Callback` (events: episode, rollout, update and
        evaluation ends; see ``docs/callbacks.md``), a list of them, or a plain
        ``callback(agent, metrics)`` run after every iteration; returning False stops.
        ``logger`` (a :class:`~ppo_envkit.io.runlog.RunLogger`) writes progress and checkpoints.
        ``progress_bar``: without a ``logger``, show progress (a live bar in a terminal, and in
        Jupyter where ipywidgets is installed; plain lines elsewhere).
        """
        steps = self.config.run.total_timesteps if total_timesteps is None else int(total_timesteps)
        if steps < 1:
            raise ValueError("total_timesteps must be >= 1")
        if progress_bar and logger is None:
            from .io.runlog import RunLogger

            logger = RunLogger(None, progress=True, tensorboard=False)
        return self.train(callback=callback, logger=logger, target_timesteps=self.num_timesteps + steps)

    def train(
        self,
        callback: AnyCallback | None = None,
        logger: RunLogger | None = None,
        *,
        target_timesteps: int | None = None,
    ) -> PPO:
        """Train until ``target_timesteps`` (default: the plan set by the last :meth:`learn`, or
        restored by :meth:`resume`).

        Planning a run's full length here and stopping early from ``callback`` trains a run in
        pieces; the learning-rate schedule follows the plan.
        """
        try:
            trainer = self._ready_trainer()
            if target_timesteps is not None:
                trainer.plan(target_timesteps)
            self._group.begin_call(trainer)
            events, plain = self._events(callback)
            events = self._with_sinks(events, logger)
            trainer.train(None if plain is None else lambda metrics: plain(self, metrics), logger, events)
        except BaseException:
            self._group.end(failed=True)
            raise
        finally:
            if logger is not None:
                logger.close()
        return self

    def _events(self, callback: AnyCallback | None) -> tuple[Callback | None, MetricsCallback | None]:
        """``callback`` as events (a Callback, with ``agent`` set) or as a plain function."""
        if callback is None:
            return None, None
        if isinstance(callback, (list, tuple)):
            callback = CallbackList(callback)
        if isinstance(callback, Callback):
            callback.agent = self
            for inner in getattr(callback, "callbacks", ()):
                inner.agent = self
            return callback, None
        if callable(callback):
            return None, callback
        raise TypeError(
            f"callback must be a ppo_envkit.Callback, a list of them, or a function (agent, metrics), "
            f"not {type(callback).__name__}"
        )

    def _with_sinks(self, events: Callback | None, logger: RunLogger | None) -> Callback | None:
        """The user's events plus the run's own consumers of them (``run.eval_video``)."""
        if logger is None or not self.config.run.eval_video or self.config.run.eval_interval == 0:
            return events
        from .algo.evaluation import EVAL_SEED_OFFSET
        from .algo.video import EvalVideo

        video = EvalVideo(logger, self.config.run.seed + EVAL_SEED_OFFSET)
        video.agent = self
        return _UserState([events, video] if events is not None else [video], user=events)

    def show(
        self, *, seed: int = 0, deterministic: bool = True, max_steps: int = 1000, fmt: str = "mp4"
    ) -> Any:
        """Play one episode and return it as an inline video (``_repr_html_``: a base64 MP4, or a
        GIF with ``fmt="gif"``) that Jupyter or Colab shows without a display; ``.save(path)``
        writes the file. The episode renders with ``rgb_array`` in a copy made from the settings."""
        from .algo.video import play_episode
        from .io.media import InlineVideo, gif_bytes, mp4_bytes

        if fmt not in ("mp4", "gif"):
            raise ValueError(f"fmt must be mp4 or gif, not {fmt!r}")
        episode = play_episode(
            self.policy, self.config.env, seed=seed, deterministic=deterministic, max_frames=max_steps
        )
        if fmt == "gif":
            data, mime = gif_bytes(episode.frames, episode.fps), "image/gif"
        else:
            data, mime = mp4_bytes(episode.frames, episode.fps), "video/mp4"
        return InlineVideo(data, mime, episode_return=episode.episode_return, frames=len(episode.frames))

    def env_set(self, name: str, value: Any) -> None:
        """Set attribute ``name`` of every training copy of the environment to ``value`` (a
        curriculum's difficulty, say), in every vectorization and on every rank, at the start of
        the next iteration. ``value`` is JSON-ready; the change is part of the run's state, so
        checkpoints and exact resume keep it. Evaluation copies keep the configured settings."""
        trainer = self._trainer or self._ready_trainer()
        trainer.request_env_change("set", name, [value])

    def env_call(self, name: str, *args: Any) -> None:
        """Call method ``name(*args)`` of every training copy (as :meth:`env_set`)."""
        trainer = self._trainer or self._ready_trainer()
        trainer.request_env_change("call", name, list(args))

    def prepare(self) -> None:
        """Build what training needs before its first step (the environment copies and the
        optimizer), so that the first :meth:`learn` starts at once (benchmarks time from here)."""
        trainer = self._ready_trainer()
        trainer.prepare()
        trainer.learner.optimizer  # noqa: B018 (creating it imports torch._dynamo, 0.8 s)

    def _ready_trainer(self) -> Trainer:
        """The collector, learner and loop that train this agent, for the current settings
        (built on first use and kept between training calls, so that episodes go on)."""
        trainer = self._trainer
        if trainer is not None:
            trainer.apply_settings(self.config)  # a one-line error for what may not change
        current = trainer.collectives if trainer is not None else None
        flat_dim = self.policy.flattener.flat_dim
        collectives = self._group.collectives(self.config, self.policy, flat_dim, current)
        if trainer is None:
            trainer = self._trainer = Trainer(
                self.policy, self.config, self.generator, self.state, collectives
            )
        elif collectives is not current:
            trainer.attach(collectives)
        return trainer

    @property
    def local_num_envs(self) -> int:
        """Environment copies this process steps (``env.num_envs`` split over ``run.processes``)."""
        return copies_per_rank(self.config)

    def helpers_peak_rss_mb(self) -> float:
        """Peak resident memory of the other ``run.processes`` ranks while they run (0 otherwise)."""
        return self._group.peak_rss_mb()

    # ----------------------------------------------------------------------------- files

    def _agent_files(self) -> dict[str, Any]:
        policy = self.policy
        return ckpt.agent_files(
            policy.state_dict(), self.config, self.observation_space, self.action_space, self.state
        )

    def save(self, path: str | Path) -> Path:
        """Write an agent directory (``model.safetensors`` + ``agent.json``) atomically."""
        return atomic_write_dir(Path(path), self._agent_files())

    def save_checkpoint(self, path: str | Path) -> Path:
        """An agent directory plus the trainer state needed to resume exactly."""
        if self._trainer is None:
            raise RuntimeError("nothing to resume before training has started: use save()")
        return atomic_write_dir(Path(path), self._trainer.checkpoint_files())

    def export_onnx(
        self,
        path: str | Path,
        *,
        distribution: bool = False,
        value: bool = False,
        action_mask: bool | None = None,
    ) -> Path:
        """Write the deterministic policy, preprocessing included, as one ONNX graph (needs
        ``pip install -e ".[export]"``); optionally with the distribution's and the value's
        outputs. See :mod:`ppo_envkit.export.onnx`."""
        from .export.onnx import export_onnx

        return export_onnx(self, path, distribution=distribution, value=value, action_mask=action_mask)

    def check_onnx(self, path: str | Path, *, steps: int = 1000, seed: int = 0) -> Any:
        """Compare an exported model's actions in onnxruntime with this agent's, on ``steps``
        observations of its environment; a disagreement raises a one-line ``ExportError``."""
        from .export.check import check_export

        return check_export(self, path, steps=steps, seed=seed)

    @classmethod
    def load(cls, path: str | Path, device: str | None = "cpu", config_overrides: Any = None) -> PPO:
        """Load an agent directory (or a run directory's final agent). Never unpickles."""
        stored = ckpt.read_agent(path)
        config = stored.config.with_overrides(config_overrides) if config_overrides else stored.config
        # Nothing named by the file is imported: the spaces are stored as data, and the
        # environment (needed only to act in it) comes from the user's own registrations.
        try:
            observation_space = space_from_data(stored.meta["observation_space"])
            action_space = space_from_data(stored.meta["action_space"])
        except (
            TypeError,
            KeyError,
            ValueError,
            AttributeError,
            IndexError,
            OverflowError,
            RecursionError,
        ) as exc:
            raise ckpt.AgentFileError(
                f"{stored.path / ckpt.META_FILE}: the stored spaces are malformed "
                f"({type(exc).__name__}: {brief(exc, 160)})"
            ) from None
        agent = cls(
            config=config, observation_space=observation_space, action_space=action_space, device=device
        )
        ckpt.check_weights(stored.path, stored.tensors, agent.policy.state_dict())
        agent.policy.load_state_dict(stored.tensors)
        registered = agent.state.action_names
        agent.state = stored.state
        agent.state.target_timesteps = config.run.total_timesteps
        agent.state.action_names = registered or agent._fitting_names(stored.state.action_names)
        agent.path = stored.path
        return agent

    @classmethod
    def resume(cls, checkpoint_dir: str | Path, device: str | None = None) -> PPO:
        """An agent with its optimizer, RNG, counters and environment episodes restored."""
        agent = cls.load(checkpoint_dir, device=device)
        agent._ready_trainer().load_resume_state(*ckpt.load_trainer_state(Path(checkpoint_dir)))
        return agent

    def check_env_compatible(self, env: Any) -> None:
        """Raise a clear error if ``env``'s spaces differ from the agent's (several agents: each
        agent's spaces)."""
        layout = agent_spaces(env) if hasattr(env, "get_wrapper_attr") else None
        require_fits(self.config.env.id, self, env if layout is None else layout)

    def close(self) -> None:
        """Close the environments and end the other training processes (``run.processes``)."""
        self._group.end()
        if self._trainer is not None:
            self._trainer.close()


def evaluate(
    agent: PPO,
    episodes: int = 10,
    *,
    deterministic: bool = True,
    seed: int = 0,
    num_envs: int | None = None,
) -> EvalResult:
    """Play ``episodes`` full episodes with the agent's stored normalization statistics
    (:meth:`PPO.evaluate`)."""
    return agent.evaluate(episodes, deterministic=deterministic, seed=seed, num_envs=num_envs)


__all__ = ["PPO", "AnyCallback", "MetricsCallback", "StatefulActor", "evaluate"]


class _UserState(CallbackList):
    """The user's callback with the run's own consumers: events go to all of them, but the
    state saved with checkpoints is the user's alone (as without the consumers)."""

    def __init__(self, callbacks: list[Callback], user: Callback | None):
        super().__init__(callbacks)
        self.user = user

    def state_dict(self) -> dict[str, Any]:
        return self.user.state_dict() if self.user is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.user is not None:
            self.user.load_state_dict(state)
