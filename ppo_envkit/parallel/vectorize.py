"""Building the vector of training copies: in this process, in worker processes, or in shards.

Every environment built for training is wrapped in
:class:`~ppo_envkit.environments.episodes.ReplayableEpisodes` and vectorized with
same-step autoreset, so that a step that ends an episode reports the episode's real final
observation in ``info["final_obs"]`` (needed to bootstrap truncated episodes correctly).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import gymnasium as gym
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ..config import EnvConfig
from ..environments.discovery import load_env_module, user_modules
from ..environments.episodes import ReplayableEpisodes
from ..environments.factory import make_configured_env
from ..environments.registry import EnvNotFoundError, ensure_registered, is_gymnasium_env
from ..errors import EnvWorkerError
from .lifeline import die_with_parent

__all__ = ["make_vec_env"]


class _EnvFactory:
    """A picklable thunk that builds one training copy (also inside worker processes).

    It carries the names of the modules to import, never classes: a worker started
    with ``spawn`` could not unpickle a class from a user file before importing it.
    """

    def __init__(self, config: EnvConfig, modules: Sequence[str]):
        self.config = config
        self.env_id = config.id
        self.modules = list(modules)
        self.creator_pid = os.getpid()

    def __call__(self) -> gym.Env:
        if os.getpid() != self.creator_pid:  # in a worker process: end with the trainer
            die_with_parent(self.creator_pid)
        for module in self.modules:
            load_env_module(module)
        try:
            ensure_registered(self.env_id)
        except EnvNotFoundError:
            loaded = ", ".join(self.modules) or "none"
            raise EnvNotFoundError(
                f"environment '{self.env_id}' is not registered in this worker process (modules "
                f"imported: {loaded}). Register it at module level of a file and pass that file "
                "with --env-module (or put it in ./envs), not under `if __name__ == '__main__':`; "
                "or use env.vectorization=sync"
            ) from None
        return ReplayableEpisodes(make_configured_env(self.config), self.config.seed_every_episode)


def _worker_modules(env_id: str, modules: Sequence[str]) -> list[str]:
    """What a fresh worker must import to know ``env_id``: loaded user modules, plus the module
    that defines its entry point (when the user imported it themselves rather than through us)."""
    out = list(modules) or user_modules()
    spec = gym.registry.get(env_id)
    if spec is not None and not isinstance(spec.entry_point, str) and not is_gymnasium_env(env_id):
        module = getattr(spec.entry_point, "__module__", None)
        if module and not module.startswith(("__main__", "__mp_main__", "ppo_envkit_user_")):
            if module not in out:
                out.append(module)
    return out


def make_vec_env(
    config: EnvConfig, modules: Sequence[str] = (), *, context: str | None = None
) -> gym.vector.VectorEnv:
    """``config.num_envs`` training copies with same-step autoreset.

    ``context`` is the multiprocessing start method of asynchronous vectorization
    (``fork``, ``spawn``, ``forkserver``; default: the platform's).
    """
    ensure_registered(config.id)
    factory = _EnvFactory(config, _worker_modules(config.id, modules))
    fns = [factory] * config.num_envs
    if config.vectorization == "ale":  # the ALE's C++ vector: the spaces of the Gymnasium path
        from .ale_vector import AleVectorEnv, ale_options

        ale_options(config)  # (refuses settings it cannot reproduce before building anything)
        probe = make_configured_env(config)
        try:
            return AleVectorEnv(config, probe.observation_space, probe.action_space)
        finally:
            probe.close()
    if config.vectorization == "async":
        if config.num_workers is not None:  # shards of copies, one per process, this one included
            from .vector import ShardedVectorEnv

            return ShardedVectorEnv(fns, config.num_workers, context=context)
        from .async_env import GuardedAsyncVectorEnv

        try:
            return GuardedAsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP, context=context)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise EnvWorkerError(
                f"an environment worker died while building {config.id} (its error is printed above); "
                "env.vectorization=sync shows it as a traceback"
            ) from None
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
