"""Play an exported agent with nothing but numpy, gymnasium and onnxruntime.

    ppo-envkit export agents/lunarlander -o lunarlander.onnx
    python examples/onnx_inference.py lunarlander.onnx --episodes 100 --seed 0

The environment's id and arguments come from the model's metadata, and so do its wrappers
(``env_wrappers``: ``module:Class`` names with keyword arguments, applied innermost first,
before frame stacking); a wrapper that cannot be imported here is named, and nothing is played
(the policy would see other observations than it was trained on). An id written ``module:id``
imports its module, as ``gym.make`` does. Episodes are played
exactly as ``ppo-envkit eval --episodes N --seed S`` plays them (the same number of
environment copies, copy ``i`` reset with seed ``S + i``, the same split of episodes among
the copies), so the mean return is comparable number for number. No torch, no ppo-envkit:
this file is meant to be copied next to a deployed model.

A composite (Tuple/Dict) action comes out as one output per part (``action/<part>``, in the
space's order); :func:`rebuild` puts them back into the structure of the action space.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import zlib
from typing import Any

import gymnasium as gym
import numpy as np
import onnxruntime as ort
from gymnasium.vector import AutoresetMode, SyncVectorEnv

#: ppo-envkit eval's largest number of environment copies.
MAX_COPIES = 16


class OnnxPolicy:
    """The exported graph: raw (batched) observations in, environment actions out."""

    def __init__(self, path: str):
        options = ort.SessionOptions()
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.env_id: str = meta["env_id"]
        self.env_kwargs: dict[str, Any] = json.loads(meta["env_kwargs"])
        self.max_episode_steps: int | None = json.loads(meta["max_episode_steps"])
        self.inputs: list[dict[str, Any]] = json.loads(meta["inputs"])
        self.frame_stack: int = json.loads(meta.get("frame_stack", "1"))
        self.wrappers: list[dict[str, Any]] = json.loads(meta.get("env_wrappers", "[]"))
        self.masked: bool = json.loads(meta.get("action_masks", "false"))

    def __call__(self, obs: Any, masks: np.ndarray | None = None, space: gym.Space | None = None) -> Any:
        """The batch's actions; with ``space`` (the environment's single action space) a
        composite action is rebuilt into its structure."""
        feeds = {}
        for spec in self.inputs:  # one input per observation leaf (Dict key), "obs" for a plain space
            if spec["name"] == "action_mask":  # a masked agent: True for each legal action
                feeds["action_mask"] = np.asarray(masks, dtype=bool)
                continue
            leaf = obs
            for key in spec["path"]:
                leaf = leaf[key]
            if "text_hash_size" in spec:  # text (MiniGrid's mission) goes in as its word counts
                leaf = bag_of_words(leaf, int(spec["text_hash_size"]))
            feeds[spec["name"]] = np.asarray(leaf, dtype=spec["dtype"])
        outputs = self.session.run(None, feeds)  # the action first (a composite one: one per part)
        if isinstance(space, gym.spaces.Tuple | gym.spaces.Dict):
            return rebuild(space, iter(outputs))
        return outputs[0]


def rebuild(space: gym.Space, parts: Any) -> Any:
    """A composite action batch in the structure of ``space`` from its parts, in the space's order."""
    if isinstance(space, gym.spaces.Dict):
        return {key: rebuild(sub, parts) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(rebuild(sub, parts) for sub in space.spaces)
    return next(parts)


def _leaf_masks(space: gym.Space, raw: Any) -> list[np.ndarray]:
    """A composite action's mask given in the space's structure, as the flat parts of its
    maskable (discrete) parts in the space's order; a part left out: all legal."""
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        keys = space.spaces.keys() if isinstance(space, gym.spaces.Dict) else range(len(space.spaces))
        out = []
        for key in keys:
            sub = None
            if raw is not None:
                try:
                    sub = raw[key]
                except (KeyError, IndexError):
                    sub = None
            out += _leaf_masks(space[key], sub)
        return out
    sizes = {
        gym.spaces.Discrete: lambda s: int(s.n),
        gym.spaces.MultiDiscrete: lambda s: int(np.sum(s.nvec)),
        gym.spaces.MultiBinary: lambda s: 2 * int(np.prod(s.shape)),
    }
    size = next((f(space) for kind, f in sizes.items() if isinstance(space, kind)), None)
    if size is None:  # a Box part has no mask
        return []
    if raw is None:
        return [np.ones(size, bool)]
    parts = raw if isinstance(raw, (list, tuple)) else [raw]
    return [np.concatenate([np.asarray(p).reshape(-1) for p in parts]).astype(bool)]


def bag_of_words(texts: Any, size: int) -> np.ndarray:
    """A batch of strings -> ``[batch, size]`` word counts, as the model's metadata ("encoding"
    of a text input) says: lower-cased runs of [0-9a-z], each counted in column
    ``crc32(utf-8 bytes) % size``."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = np.zeros((len(texts), size), np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"[0-9a-z]+", str(text).lower()):
            out[i, zlib.crc32(word.encode("utf-8")) % size] += 1.0
    return out


class FlatActionMask(gym.Wrapper):
    """``info["action_mask"]`` as one flat boolean row: from the environment's
    ``action_masks()`` if it has one, else from its info (a list of per-dimension masks, as a
    MultiDiscrete environment may give, is concatenated). Not read at an episode's end."""

    def _mask(self, info: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self.env.unwrapped, "action_masks", None)
        raw = method() if callable(method) else info.get("action_mask")
        if raw is None:
            return info
        space = self.env.action_space
        if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple) and (
            isinstance(raw, dict) or any(p is None or np.ndim(p) > 0 for p in raw)
            if isinstance(raw, (dict, tuple, list))
            else False
        ):
            return {**info, "action_mask": np.concatenate(_leaf_masks(space, raw))}
        parts = raw if isinstance(raw, (list, tuple)) else [raw]
        return {
            **info,
            "action_mask": np.concatenate([np.asarray(p).reshape(-1) for p in parts]).astype(bool),
        }

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return obs, self._mask(info)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            return obs, reward, terminated, truncated, {k: v for k, v in info.items() if k != "action_mask"}
        return obs, reward, terminated, truncated, self._mask(info)


def wrapper_classes(wrappers: list[dict[str, Any]]) -> list[tuple[type, dict[str, Any]]]:
    """The classes the metadata's ``env_wrappers`` name, with their keyword arguments. Only
    ``gymnasium.Wrapper`` classes, imported by module name (never from a path); SystemExit with
    one line per wrapper that cannot be applied here, and why."""
    found, problems = [], []
    for wrapper in wrappers:
        name, kwargs = wrapper["name"], wrapper.get("kwargs") or {}
        module_name, _, attr = name.partition(":")
        try:
            value: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                value = getattr(value, part)
        except (ImportError, AttributeError) as exc:
            problems.append(f"cannot apply wrapper {name}: {type(exc).__name__}: {exc}")
            continue
        if not (isinstance(value, type) and issubclass(value, gym.Wrapper)):
            problems.append(f"cannot apply wrapper {name}: not a gymnasium.Wrapper class")
            continue
        found.append((value, kwargs))
    if problems:
        raise SystemExit("\n".join(problems))
    return found


def play(policy: OnnxPolicy, episodes: int, seed: int, num_envs: int | None = None) -> list[float]:
    """Returns of ``episodes`` whole episodes, split among the copies in advance."""
    n = max(1, min(episodes, num_envs or MAX_COPIES))
    extra = dict(policy.env_kwargs)
    if policy.max_episode_steps is not None:
        extra["max_episode_steps"] = policy.max_episode_steps

    wrappers = wrapper_classes(policy.wrappers)

    def make() -> gym.Env:
        env = gym.make(policy.env_id, **extra)
        for cls, kwargs in wrappers:  # innermost first, as training applied them
            env = cls(env, **kwargs)
        if policy.frame_stack > 1:  # the agent was trained on stacks of observations
            env = gym.wrappers.FrameStackObservation(env, policy.frame_stack)
        return FlatActionMask(env) if policy.masked else env

    envs = SyncVectorEnv([make] * n, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        quota = np.full(n, episodes // n)
        quota[: episodes % n] += 1
        finished = np.zeros(n, dtype=np.int64)
        running = np.zeros(n)
        returns: list[float] = []
        obs, info = envs.reset(seed=seed)
        while (finished < quota).any():
            action = policy(obs, info.get("action_mask"), envs.single_action_space)
            obs, reward, terminated, truncated, info = envs.step(action)
            running += reward
            for i in np.flatnonzero(terminated | truncated):
                if finished[i] < quota[i]:
                    returns.append(float(running[i]))
                    finished[i] += 1
                running[i] = 0.0
        return returns
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an ONNX file written by ppo-envkit export")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num-envs", type=int, default=None, help="environment copies (default min(episodes, 16))"
    )
    parser.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers the environment (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    for module in args.modules:
        importlib.import_module(module)
    policy = OnnxPolicy(args.model)
    returns = play(policy, args.episodes, args.seed, args.num_envs)
    mean, std = float(np.mean(returns)), float(np.std(returns))
    if args.json:
        print(
            json.dumps(
                {
                    "env_id": policy.env_id,
                    "mean_return": mean,
                    "std_return": std,
                    "episodes": len(returns),
                    "seed": args.seed,
                    "returns": returns,
                }
            )
        )
    else:
        print(
            f"{policy.env_id}: mean return {mean:.2f} +- {std:.2f} "
            f"over {len(returns)} episodes (seed {args.seed})"
        )


if __name__ == "__main__":
    main()
