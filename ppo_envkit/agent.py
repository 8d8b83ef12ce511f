"""The ``PPO`` agent: the public face of the library, and little else.

It holds what an agent *is*: its settings, spaces, policy (weights and normalization
statistics), random generator and counters. Acting is :meth:`PPO.predict`; training
is delegated to a :class:`~ppo_envkit.algo.trainer.Trainer` (collector, learner, loop)
built on first use and kept between calls; which ranks train together is
:class:`~ppo_envkit.parallel.group.TrainingGroup`'s decision; files are
:mod:`ppo_envkit.io.checkpoint`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from .algo.optim import FlatAdam
from .algo.policy import ActorCritic, resolve_device
from .algo.recurrent import Memory
from .algo.trainer import Trainer
from .config import TrainConfig
from .environments.factory import make_configured_env
from .environments.lookup import env_info
from .errors import brief
from .io import checkpoint as ckpt
from .parallel import copies_per_rank
from .parallel.group import TrainingGroup
from .spaces import ObsFlattener, require_same_spaces, space_from_data


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
        self.config = config
        self.device = resolve_device(config.run.device)
        if observation_space is None or action_space is None:
            probe = make_configured_env(config.env)
            observation_space, action_space = probe.observation_space, probe.action_space
            probe.close()
        self.observation_space, self.action_space = observation_space, action_space
        threads = config.run.torch_threads
        if threads is None:  # the default: 1, or every core for convolutions
            images = ObsFlattener(observation_space, images=config.policy.image_encoder != "none").images()
            threads = len(os.sched_getaffinity(0)) if images else 1
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
        self.num_timesteps = 0
        self.iteration = 0
        self.target_timesteps = config.run.total_timesteps
        self.metadata: dict[str, Any] = {}  # provenance, evaluation, distributed: kept in agent.json
        self.last_metrics: dict[str, float] = {}
        self.path: Path | None = None  # where load() found the agent
        self._stored_action_names: list[str] | None = None
        self._trainer: Trainer | None = None
        self._group = TrainingGroup(self)

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
        policy = self.policy
        if not policy.recurrent:
            if state is not None or episode_start is not None:
                raise ValueError(
                    "this agent has no memory (policy.recurrent is none): predict takes no state"
                )
            return policy.predict(obs, deterministic, self.generator, action_mask=action_mask)
        batched = policy.flattener.is_batched(obs)
        memory = self._memory(state, episode_start, policy.flattener.batch_size(obs))
        action = policy.predict(obs, deterministic, self.generator, action_mask=action_mask, memory=memory)
        new_state = memory.state.cpu().numpy()
        return action, new_state if batched else new_state[0]

    def _memory(self, state: np.ndarray | None, episode_start: Any, batch: int) -> Memory:
        """A :class:`Memory` from a user's state and episode starts, checked."""
        memory = self.policy.initial_memory(batch)
        if state is not None:
            array = np.asarray(state, dtype=np.float32).reshape(-1, self.policy.state_size)
            if array.shape[0] != batch:
                raise ValueError(
                    f"state holds {array.shape[0]} recurrent states of {self.policy.state_size} values, "
                    f"for {batch} observations"
                )
            memory.state = torch.from_numpy(array).to(self.device)
            memory.starts = torch.zeros_like(memory.starts)
        if episode_start is not None:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            memory.starts = torch.from_numpy(np.broadcast_to(starts, (batch,)).copy()).to(self.device)
        return memory

    def stateful(self, deterministic: bool = True) -> StatefulActor:
        """An actor that keeps a recurrent policy's state between calls (any policy works)."""
        return StatefulActor(self, deterministic)

    def policy_step(
        self, obs: Any, deterministic: bool = True, action_mask: Any = None, state: np.ndarray | None = None
    ) -> dict[str, Any]:
        """One single-observation decision with what the policy thinks (for viewers); for a
        recurrent policy from ``state`` (None: an episode's start), with the new ``state``."""
        memory = self._memory(state, None, 1) if self.policy.recurrent else None
        decision = self.policy.decide(
            obs, deterministic, self.generator, action_mask=action_mask, memory=memory
        )
        decision["state"] = None if memory is None else memory.state[0].cpu().numpy()
        return decision

    # ----------------------------------------------------------------------------- training

    def learn(
        self,
        total_timesteps: int | None = None,
        *,
        callback: Callable[..., Any] | None = None,
        logger: Any = None,
    ) -> PPO:
        """Train for ``total_timesteps`` more environment steps (default: ``run.total_timesteps``).

        ``callback(agent, metrics)`` runs after every iteration; returning False stops.
        ``logger`` (a :class:`~ppo_envkit.io.runlog.RunLogger`) writes progress and checkpoints.
        """
        steps = self.config.run.total_timesteps if total_timesteps is None else int(total_timesteps)
        if steps < 1:
            raise ValueError("total_timesteps must be >= 1")
        self.target_timesteps = self.num_timesteps + steps
        return self.train(callback=callback, logger=logger)

    def train(self, callback: Callable[..., Any] | None = None, logger: Any = None) -> PPO:
        """Train until ``target_timesteps`` (set by :meth:`learn`, or restored by :meth:`resume`).

        Setting ``target_timesteps`` to a planned run length and stopping early from
        ``callback`` trains a run in pieces; the learning-rate schedule follows the plan.
        """
        try:
            trainer = self.trainer
            self._group.begin_call(trainer)
            trainer.train(callback, logger)
        except BaseException:
            self._group.end(failed=True)
            raise
        finally:
            if logger is not None:
                logger.close()
        return self

    @property
    def trainer(self) -> Trainer:
        """The collector, learner and loop that train this agent, for the current settings
        (built on first use and kept between training calls, so that episodes go on)."""
        current = self._trainer.collectives if self._trainer is not None else None
        collectives = self._group.collectives(self.config, self.policy, current)
        if self._trainer is None:
            self._trainer = Trainer(self, collectives)
        elif collectives is not current:
            self._trainer.attach(collectives)
        return self._trainer

    @property
    def optimizer(self) -> FlatAdam:
        return self.trainer.learner.optimizer

    @property
    def local_num_envs(self) -> int:
        """Environment copies this process steps (``env.num_envs`` split over ``run.processes``)."""
        return copies_per_rank(self.config)

    def helpers_peak_rss_mb(self) -> float:
        """Peak resident memory of the other ``run.processes`` ranks while they run (0 otherwise)."""
        return self._group.peak_rss_mb()

    # ----------------------------------------------------------------------------- files

    @property
    def action_names(self) -> list[str] | None:
        """Names of the discrete actions (registered, or stored with the agent), when they fit the space."""
        names = env_info(self.config.env.id).action_names or self._stored_action_names
        if names and isinstance(self.action_space, spaces.Discrete) and len(names) == self.action_space.n:
            return list(names)
        return None

    def save(self, path: str | Path) -> Path:
        """Write an agent directory (``model.safetensors`` + ``agent.json``) atomically."""
        return ckpt.atomic_write_dir(Path(path), ckpt.agent_files(self))

    def save_checkpoint(self, path: str | Path) -> Path:
        """An agent directory plus the trainer state needed to resume exactly."""
        if self._trainer is None:
            raise RuntimeError("nothing to resume before training has started: use save()")
        return ckpt.save_checkpoint(Path(path), ckpt.agent_files(self), *self._trainer.state())

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
        outputs. See :mod:`ppo_envkit.io.export`."""
        from .io.export import export_onnx

        return export_onnx(self, path, distribution=distribution, value=value, action_mask=action_mask)

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
        steps = stored.meta.get("num_timesteps", 0)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps < 2**62:
            raise ckpt.AgentFileError(f"{stored.path / ckpt.META_FILE}: num_timesteps must be a count")
        agent.num_timesteps = steps
        agent.metadata = {k: stored.meta[k] for k in ("provenance", "evaluation") if k in stored.meta}
        agent.path = stored.path
        agent._stored_action_names = stored.meta["env"].get("action_names")
        return agent

    @classmethod
    def resume(cls, checkpoint_dir: str | Path, device: str | None = None) -> PPO:
        """An agent with its optimizer, RNG, counters and environment episodes restored."""
        agent = cls.load(checkpoint_dir, device=device)
        agent.trainer.load_state(*ckpt.load_trainer_state(Path(checkpoint_dir)))
        return agent

    def check_env_compatible(self, env: Any) -> None:
        """Raise a clear error if ``env``'s spaces differ from the agent's."""
        obs_space = getattr(env, "single_observation_space", None) or env.observation_space
        act_space = getattr(env, "single_action_space", None) or env.action_space
        require_same_spaces(
            self.config.env.id, (self.observation_space, self.action_space), (obs_space, act_space)
        )

    def close(self) -> None:
        """Close the environments and end the other training processes (``run.processes``)."""
        self._group.end()
        if self._trainer is not None:
            self._trainer.close()


class StatefulActor:
    """Acts in episodes, keeping a recurrent policy's state between calls::

        actor = agent.stateful()
        obs, info = env.reset(seed=0)
        while True:
            obs, reward, terminated, truncated, info = env.step(actor(obs))
            if terminated or truncated:
                obs, info = env.reset()
                actor.reset()

    For a batch of copies, pass ``episode_start`` (True where an episode just began) instead
    of calling :meth:`reset`. A feed-forward agent works too (there is nothing to keep).
    """

    def __init__(self, agent: PPO, deterministic: bool = True):
        self.agent, self.deterministic = agent, deterministic
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        """The next call starts new episodes."""
        self.state = None

    def __call__(self, obs: Any, action_mask: Any = None, episode_start: Any = None) -> Any:
        if not self.agent.policy.recurrent:
            return self.agent.predict(obs, self.deterministic, action_mask)
        action, self.state = self.agent.predict(
            obs, self.deterministic, action_mask, state=self.state, episode_start=episode_start
        )
        return action


__all__ = ["PPO", "StatefulActor"]
