"""The ``PPO`` agent: the public face of the library, and little else.

It holds what an agent *is*: its settings, spaces, policy (weights and normalization
statistics), random generator and counters. Acting is :meth:`PPO.predict`; training
is delegated to a :class:`~ppo_envkit.algo.trainer.Trainer` (collector, learner, loop)
built on first use and kept between calls; files are :mod:`ppo_envkit.io.checkpoint`'s.
Which ranks train together is decided here, in :meth:`PPO._collectives`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from .algo.policy import ActorCritic, resolve_device
from .algo.trainer import Trainer
from .config import TrainConfig
from .environments.factory import make_env
from .environments.lookup import env_info, modules_providing
from .io import checkpoint as ckpt
from .parallel import copies_per_rank, launched_by_torchrun
from .parallel.collectives import Collectives, SingleProcess
from .parallel.ranks import ForkedRanks, share_training_state, slot_bytes
from .spaces import mismatch_message, space_from_data, space_to_data, spaces_match


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
        if config.run.torch_threads:
            torch.set_num_threads(config.run.torch_threads)
        if observation_space is None or action_space is None:
            probe = make_env(config.env.id, config.env.kwargs, max_episode_steps=config.env.max_episode_steps)
            observation_space, action_space = probe.observation_space, probe.action_space
            probe.close()
        self.observation_space, self.action_space = observation_space, action_space
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
        self._ranks: ForkedRanks | None = None  # run.processes > 1

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

    @torch.inference_mode()
    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for raw environment observation(s), in the environment's format.

        A single observation gives a single action; a batch gives a batch.
        """
        batched = self.policy.flattener.is_batched(obs)
        x = self.policy.obs_norm(self.policy.obs_to_tensor(obs, batched=batched))
        action, _, _, _ = self.policy.act(x, deterministic=deterministic, generator=self.generator)
        env_action = self.policy.head.to_env(action)
        return env_action if batched else env_action[0]

    @torch.inference_mode()
    def policy_step(self, obs: Any, deterministic: bool = True) -> dict[str, Any]:
        """One single-observation decision with what the policy thinks (for viewers)."""
        x = self.policy.obs_norm(self.policy.obs_to_tensor(obs, batched=False))
        action, logp, value, params = self.policy.act(
            x, deterministic=deterministic, generator=self.generator
        )
        return {
            "action": self.policy.head.to_env(action)[0],
            "raw_action": action[0].cpu().numpy(),
            "log_prob": float(logp[0]),
            "value": float(value[0]),
            **{k: v[0] for k, v in self.policy.head.describe(params).items()},
        }

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
            ranks = self._ranks
            if ranks is not None and not ranks.started:
                trainer.attach(ranks.collectives)  # every rank starts from the statistics as they are now
                trainer.learner.optimizer  # noqa: B018 (created once, before the fork, not in every rank)
                ranks.start(self._serve_as_rank)
            elif ranks is not None:  # the other ranks wait for this call: wake them with rank 0's state
                share_training_state(ranks.collectives, self, trainer.learner.optimizer)
            trainer.train(callback, logger)
        except BaseException:
            self._end_ranks(failed=True)
            raise
        finally:
            if logger is not None:
                logger.close()
        return self

    @property
    def trainer(self) -> Trainer:
        """The collector, learner and loop that train this agent, for the current settings
        (built on first use and kept between training calls, so that episodes go on)."""
        collectives = self._collectives()
        if self._trainer is None:
            self._trainer = Trainer(self, collectives)
        elif self._trainer.collectives is not collectives:
            self._trainer.attach(collectives)
        return self._trainer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.trainer.learner.optimizer

    def _collectives(self) -> Collectives:
        """The ranks this agent trains with: torchrun's, ``run.processes`` forked ones, or none."""
        current = self._trainer.collectives if self._trainer is not None else None
        if launched_by_torchrun():
            from .parallel.torchrun import TorchDistributed

            if isinstance(current, TorchDistributed):
                return current
            joined = TorchDistributed()
            joined.broadcast_all(self.policy.state_dict().values())  # same start weights everywhere
            return joined
        processes = self.config.run.processes
        if processes == 1:
            self._end_ranks()
            return current if isinstance(current, SingleProcess) else SingleProcess()
        if self.device.type != "cpu":
            raise ValueError(
                f"run.processes={processes} trains on the CPU: forked processes cannot share "
                f"a {self.device.type} context; set run.processes=1, or use torchrun for GPUs"
            )
        settings = self.config.model_dump()
        if self._ranks is None or not self._ranks.usable_for(settings):
            self._end_ranks()
            n_params = sum(p.numel() for p in self.policy.parameters())
            rows = copies_per_rank(self.config) * max(self.policy.flattener.flat_dim, 1)
            self._ranks = ForkedRanks(self, processes, slot_bytes(n_params, rows), settings)
        return self._ranks.collectives

    def _serve_as_rank(self, collectives: Collectives) -> None:
        """A forked rank (in its own process): train in step with rank 0 with environment
        copies of its own, then wait for rank 0's next training call, until it ends the ranks.
        The optimizer is rank 0's as forked, so its state matches (a resumed run's, say)."""
        assert self._trainer is not None
        trainer = Trainer(self, collectives, learner=self._trainer.learner)
        try:
            trainer.train()
            while share_training_state(collectives, self, trainer.learner.optimizer):
                trainer.train()
        finally:
            trainer.close()

    def _end_ranks(self, failed: bool = False) -> None:
        ranks, self._ranks = self._ranks, None
        if ranks is not None:
            ranks.end(failed)

    @property
    def local_num_envs(self) -> int:
        """Environment copies this process steps (``env.num_envs`` split over ``run.processes``)."""
        return copies_per_rank(self.config)

    def helpers_peak_rss_mb(self) -> float:
        """Peak resident memory of the other ``run.processes`` ranks while they run (0 otherwise)."""
        return self._ranks.peak_rss_mb() if self._ranks is not None else 0.0

    # ----------------------------------------------------------------------------- files

    @property
    def action_names(self) -> list[str] | None:
        """Names of the discrete actions (registered, or stored with the agent), when they fit the space."""
        names = env_info(self.config.env.id).action_names or self._stored_action_names
        if names and isinstance(self.action_space, spaces.Discrete) and len(names) == self.action_space.n:
            return list(names)
        return None

    def agent_metadata(self) -> dict[str, Any]:
        env = self.config.env
        return {
            "env": {
                "id": env.id,
                "kwargs": env.kwargs,
                "max_episode_steps": env.max_episode_steps,
                "modules": modules_providing(env.id),
                "action_names": self.action_names,
            },
            "observation_space": space_to_data(self.observation_space),
            "action_space": space_to_data(self.action_space),
            "policy": self.config.policy.model_dump(mode="json"),
            "config": self.config.model_dump(mode="json"),
            "num_timesteps": self.num_timesteps,
            **self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        """Write an agent directory (``model.safetensors`` + ``agent.json``) atomically."""
        return ckpt.atomic_write_dir(
            Path(path), ckpt.agent_files(self.policy.state_dict(), self.agent_metadata())
        )

    def save_checkpoint(self, path: str | Path) -> Path:
        """An agent directory plus the trainer state needed to resume exactly."""
        if self._trainer is None:
            raise RuntimeError("nothing to resume before training has started: use save()")
        meta, tensors = self._trainer.state()
        files = ckpt.agent_files(self.policy.state_dict(), self.agent_metadata())
        return ckpt.save_checkpoint(Path(path), files, meta, tensors)

    @classmethod
    def load(cls, path: str | Path, device: str | None = "cpu", config_overrides: Any = None) -> PPO:
        """Load an agent directory (or a run directory's final agent). Never unpickles."""
        stored = ckpt.read_agent(path)
        config = stored.config.with_overrides(config_overrides) if config_overrides else stored.config
        # Nothing named by the file is imported: the spaces are stored as data, and the
        # environment (needed only to act in it) comes from the user's own registrations.
        agent = cls(
            config=config,
            observation_space=space_from_data(stored.meta["observation_space"]),
            action_space=space_from_data(stored.meta["action_space"]),
            device=device,
        )
        try:
            agent.policy.load_state_dict(stored.tensors)
        except RuntimeError as exc:
            raise ckpt.AgentFileError(
                f"{stored.path}: weights do not fit the stored policy config: {exc}"
            ) from None
        agent.num_timesteps = int(stored.meta.get("num_timesteps", 0))
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
        if not spaces_match(self.observation_space, obs_space) or not spaces_match(
            self.action_space, act_space
        ):
            raise ValueError(
                mismatch_message(
                    self.config.env.id, self.observation_space, self.action_space, obs_space, act_space
                )
            )

    def close(self) -> None:
        """Close the environments and end the other training processes (``run.processes``)."""
        self._end_ranks()
        if self._trainer is not None:
            self._trainer.close()


__all__ = ["PPO"]
