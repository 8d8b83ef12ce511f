"""The agent directory: ``model.safetensors`` + ``agent.json``; and training checkpoints.

An agent directory is self-contained and safe to load from a stranger: tensors
are read with safetensors (no pickle, no code), metadata with ``json``. A
training checkpoint is an agent directory plus ``trainer.safetensors`` and
``trainer.json`` (optimizer, RNG, environment replay data, counters).

Writes are atomic (:mod:`.atomic`): a crash mid-save leaves the previous version, and a
kill never leaves half a checkpoint under its name.

Reading trusts nothing: only regular files are read (not a FIFO, not a device), each up
to a stated size, before anything is allocated; every tensor's SHA-256 recorded in
``agent.json`` is verified; weights must be finite and have the dtypes and shapes the
stored policy settings give.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config import ConfigError, TrainConfig, as_stored_before, validate_config
from ..errors import AgentFileError, StorageError, brief, quoted
from ..spaces import space_to_data
from ..state import TrainingState

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "agent.json"
TRAINER_TENSORS = "trainer.safetensors"
TRAINER_META = "trainer.json"
CHECKPOINTS_DIR = "checkpoints"
FINAL_AGENT_DIR = "agent"
BEST_AGENT_DIR = "best"
#: Largest ``agent.json``/``trainer.json`` read (they are a few kB).
MAX_JSON_BYTES = 16 << 20
#: Largest tensor file read: the weights, or a checkpoint's optimizer and episode data.
MAX_TENSOR_FILE_BYTES = 4 << 30


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("ppo-envkit", "torch", "gymnasium", "numpy", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def agent_meta(
    config: TrainConfig,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    state: TrainingState,
) -> dict[str, Any]:
    """``agent.json``'s content (before versions and time): what to build, act in, and how it trained."""
    from ..environments.lookup import modules_providing

    env = config.env
    return {
        "env": {
            "id": env.id,
            "kwargs": env.kwargs,
            "max_episode_steps": env.max_episode_steps,
            "modules": modules_providing(env.id),
            "action_names": state.action_names,
        },
        "observation_space": space_to_data(observation_space),
        "action_space": space_to_data(action_space),
        "policy": config.policy.model_dump(mode="json"),
        "config": config.model_dump(mode="json"),
        **state.to_meta(),
    }


def agent_files(
    tensors: dict[str, torch.Tensor],
    config: TrainConfig,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    state: TrainingState,
) -> dict[str, Any]:
    """The files of an agent directory: every tensor of the policy, and ``agent.json``."""
    meta = {
        "format_version": FORMAT_VERSION,
        **agent_meta(config, observation_space, action_space, state),
        "tensors_sha256": tensors_digest(tensors),
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


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (in name order). safetensors
    has no checksum; this one is recorded in ``agent.json`` and verified on load."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().to("cpu")
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        if value.numel():
            digest.update(value.reshape(-1).clone().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _regular_file(path: Path, limit: int, what: str) -> int:
    """The size of ``path``, which must be a regular file of at most ``limit`` bytes (a FIFO
    would hang the reader, ``/dev/zero`` would fill memory)."""
    try:
        info = path.stat()  # follows a symlink: what it points to must be a regular file
    except FileNotFoundError:
        raise AgentFileError(f"{path.parent} is not a complete {what}: {path.name} is missing") from None
    except OSError as exc:
        raise AgentFileError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AgentFileError(f"{path} is not a regular file; refusing to read it")
    if info.st_size > limit:
        raise AgentFileError(
            f"{path} is {info.st_size:,} bytes, more than the {limit:,} this reader accepts; "
            "refusing to read it"
        )
    return info.st_size


def _read_json(path: Path, what: str = "agent directory") -> dict[str, Any]:
    _regular_file(path, MAX_JSON_BYTES, what)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AgentFileError(f"{path} is not valid JSON ({brief(exc)})") from None
    except OSError as exc:
        raise AgentFileError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise AgentFileError(f"{path} does not hold a JSON object")
    return data


def read_tensors(path: Path, expected_digest: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle, say) is refused without being run.
    With ``expected_digest`` (from ``agent.json``), the tensors must match it."""
    _regular_file(path, MAX_TENSOR_FILE_BYTES, "agent directory")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise AgentFileError(
            f"{path} is not a valid safetensors file, refusing to load it "
            f"(agent files never contain pickled objects): {brief(exc)}"
        ) from None
    if expected_digest is not None and tensors_digest(tensors) != expected_digest:
        raise AgentFileError(
            f"{path} is corrupt: its tensors do not match the SHA-256 recorded in {META_FILE} "
            "(damaged in transfer or storage, or edited); refusing to load it"
        )
    return tensors


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
        if not isinstance(meta.get(key), dict):
            raise AgentFileError(f"{path / META_FILE} lacks the '{key}' entry (an object)")
    digest = meta.get("tensors_sha256")
    if digest is not None and not isinstance(digest, str):
        raise AgentFileError(f"{path / META_FILE}: tensors_sha256 must be a string")
    return meta, read_tensors(path / MODEL_FILE, digest)


def check_weights(path: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """The stored tensors must be exactly the policy's: the same names, dtypes and shapes (a
    dtype changed in the header would otherwise be cast silently), and finite."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise AgentFileError(f"{path}: the weights do not fit the stored policy settings ({what})")
    for name, want in expected.items():
        got = tensors[name]
        if got.dtype != want.dtype or got.shape != want.shape:
            raise AgentFileError(
                f"{path}: tensor '{name}' is {got.dtype} {tuple(got.shape)}, but the stored policy "
                f"settings give {want.dtype} {tuple(want.shape)}"
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise AgentFileError(f"{path}: tensor '{name}' holds NaN or infinite values; refusing to load it")


@dataclass
class StoredAgent:
    """An agent directory as read: where it is, ``agent.json``, its tensors, its settings."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    config: TrainConfig
    state: TrainingState


def read_agent(path: str | Path) -> StoredAgent:
    """An agent directory, or a run directory's final agent, with its settings validated."""
    path = resolve_agent_path(path)
    meta, tensors = load_agent_dir(path)
    try:
        config = as_stored_before(validate_config(meta["config"]))  # an older file: as it was meant
    except ConfigError as exc:
        raise AgentFileError(f"{path}: stored config is invalid: {exc}") from None
    steps = meta.get("num_timesteps", 0)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps < 2**62:
        raise AgentFileError(f"{path / META_FILE}: num_timesteps must be a count")
    return StoredAgent(path, meta, tensors, config, TrainingState.from_meta(meta))


def update_agent_meta(path: str | Path, key: str, value: Any) -> None:
    """Set one top-level entry of an agent's ``agent.json`` (atomic replace of that file)."""
    meta_path = Path(path) / META_FILE
    meta = _read_json(meta_path)
    meta[key] = value
    tmp = meta_path.with_name(f".{META_FILE}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        os.replace(tmp, meta_path)
    except OSError as exc:  # a full disk, a file size limit, a read-only agent: name the file
        tmp.unlink(missing_ok=True)
        message = f"could not write {quoted(meta_path)}: {exc.strerror or exc}"
        raise StorageError(exc.errno or 0, message) from None


def checkpoint_files(
    agent: dict[str, Any], trainer_meta: dict[str, Any], trainer_tensors: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """The files of a checkpoint: an agent directory's (``agent``) plus the trainer's state."""
    files = dict(agent)
    files[TRAINER_TENSORS] = (trainer_tensors, {"format": "pt"})
    trainer_meta = {**trainer_meta, "tensors_sha256": tensors_digest(trainer_tensors)}
    files[TRAINER_META] = (json.dumps(trainer_meta, indent=2, default=_json_default) + "\n").encode()
    return files


def load_trainer_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    path = Path(path)
    meta = _read_json(path / TRAINER_META, "checkpoint")
    digest = meta.get("tensors_sha256")
    return meta, read_tensors(path / TRAINER_TENSORS, digest if isinstance(digest, str) else None)


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
        and all((p / name).is_file() for name in (META_FILE, MODEL_FILE, TRAINER_META, TRAINER_TENSORS))
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
