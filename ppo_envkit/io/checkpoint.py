"""The agent directory: ``model.safetensors`` + ``agent.json``; and training checkpoints.

An agent directory is self-contained and safe to load from a stranger: tensors
are read with safetensors (no pickle, no code), metadata with ``json``. A
training checkpoint is an agent directory plus ``trainer.safetensors`` and
``trainer.json`` (optimizer, RNG, environment replay data, counters).

Writes are atomic: everything is written into a temporary sibling directory
that is renamed into place, so a crash mid-save leaves the previous version.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ConfigError, TrainConfig, validate_config
from ..errors import AgentFileError
from ..spaces import space_to_data

if TYPE_CHECKING:
    from ..agent import PPO

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "agent.json"
TRAINER_TENSORS = "trainer.safetensors"
TRAINER_META = "trainer.json"
CHECKPOINTS_DIR = "checkpoints"
FINAL_AGENT_DIR = "agent"
BEST_AGENT_DIR = "best"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("ppo-envkit", "torch", "gymnasium", "numpy", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def _to_saveable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def atomic_write_dir(
    target: Path, files: dict[str, bytes | tuple[dict[str, torch.Tensor], dict[str, str]]]
) -> Path:
    """Write ``files`` into ``target`` atomically (temporary sibling + rename).

    Values are raw bytes, or ``(tensors, metadata)`` for a safetensors file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                tensors, meta = content
                save_file(_to_saveable(tensors), str(tmp / name), metadata=meta)
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def agent_meta(agent: PPO) -> dict[str, Any]:
    """``agent.json``'s content (before versions and time): what to build, act in, and how it trained."""
    from ..environments.lookup import modules_providing

    env = agent.config.env
    return {
        "env": {
            "id": env.id,
            "kwargs": env.kwargs,
            "max_episode_steps": env.max_episode_steps,
            "modules": modules_providing(env.id),
            "action_names": agent.action_names,
        },
        "observation_space": space_to_data(agent.observation_space),
        "action_space": space_to_data(agent.action_space),
        "policy": agent.config.policy.model_dump(mode="json"),
        "config": agent.config.model_dump(mode="json"),
        "num_timesteps": agent.num_timesteps,
        **agent.metadata,
    }


def agent_files(agent: PPO) -> dict[str, Any]:
    """The files of an agent directory: every tensor, and ``agent.json``."""
    tensors = agent.policy.state_dict()
    meta = {
        "format_version": FORMAT_VERSION,
        **agent_meta(agent),
        "versions": library_versions(),
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return {
        MODEL_FILE: (tensors, {"format": "pt", "ppo_envkit_format": str(FORMAT_VERSION)}),
        META_FILE: (json.dumps(meta, indent=2, default=_json_default) + "\n").encode(),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AgentFileError(f"{path.parent} is not an agent directory: {path.name} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AgentFileError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AgentFileError(f"{path} does not hold a JSON object")
    return data


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle, say) is refused without being run."""
    if not path.exists():
        raise AgentFileError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AgentFileError(
            f"{path} is not a valid safetensors file, refusing to load it "
            f"(agent files never contain pickled objects): {exc}"
        ) from None


def load_agent_dir(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of an agent directory."""
    path = Path(path)
    if not path.is_dir():
        raise AgentFileError(f"no agent directory at {path}")
    meta = _read_json(path / META_FILE)
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise AgentFileError(
            f"{path / META_FILE}: format_version {version!r} is not supported by this ppo-envkit "
            f"(reads up to {FORMAT_VERSION}); upgrade ppo-envkit"
        )
    for key in ("env", "observation_space", "action_space", "config"):
        if key not in meta:
            raise AgentFileError(f"{path / META_FILE} lacks the '{key}' entry")
    return meta, read_tensors(path / MODEL_FILE)


@dataclass
class StoredAgent:
    """An agent directory as read: where it is, ``agent.json``, its tensors, its settings."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    config: TrainConfig


def read_agent(path: str | Path) -> StoredAgent:
    """An agent directory, or a run directory's final agent, with its settings validated."""
    path = resolve_agent_path(path)
    meta, tensors = load_agent_dir(path)
    try:
        config = validate_config(meta["config"])
    except ConfigError as exc:
        raise AgentFileError(f"{path}: stored config is invalid: {exc}") from None
    return StoredAgent(path, meta, tensors, config)


def update_agent_meta(path: str | Path, key: str, value: Any) -> None:
    """Set one top-level entry of an agent's ``agent.json`` (atomic replace of that file)."""
    meta_path = Path(path) / META_FILE
    meta = _read_json(meta_path)
    meta[key] = value
    tmp = meta_path.with_name(f".{META_FILE}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    os.replace(tmp, meta_path)


def save_checkpoint(
    path: Path, agent: dict[str, Any], trainer_meta: dict[str, Any], trainer_tensors: dict[str, torch.Tensor]
) -> Path:
    files = dict(agent)
    files[TRAINER_TENSORS] = (trainer_tensors, {"format": "pt"})
    files[TRAINER_META] = (json.dumps(trainer_meta, indent=2, default=_json_default) + "\n").encode()
    return atomic_write_dir(path, files)


def load_trainer_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    path = Path(path)
    return _read_json(path / TRAINER_META), read_tensors(path / TRAINER_TENSORS)


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and (p / TRAINER_META).exists()
        and (p / META_FILE).exists()
    ]
    return sorted(found, key=lambda p: p.name)


def resolve_agent_path(path: str | Path) -> Path:
    """An agent directory, or a run directory's final agent (else its latest checkpoint)."""
    path = Path(path)
    if (path / META_FILE).exists():
        return path
    if (path / FINAL_AGENT_DIR / META_FILE).exists():
        return path / FINAL_AGENT_DIR
    checkpoints = checkpoint_dirs(path)
    if checkpoints:
        return checkpoints[-1]
    if not path.exists():
        raise AgentFileError(f"no agent or run directory at {path}")
    raise AgentFileError(
        f"{path} holds no agent: expected {META_FILE}, {FINAL_AGENT_DIR}/{META_FILE} or a checkpoint"
    )


# ------------------------------------------------------------------- optimizer and RNG


def optimizer_state(optimizer: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimizer with torch.optim's state-dict layout, as (JSON-ready part, tensors)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def load_optimizer_state(optimizer: Any, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, scalars in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
