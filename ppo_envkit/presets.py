"""Presets: named training configs, one YAML file each in ``agents/``.

Looked up in ``./agents`` of the current directory first (a user's own), then in
the ``agents/`` folder shipped with ppo-envkit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

from .config import MAX_CONFIG_BYTES, ConfigError, TrainConfig, load_config, read_yaml, split_env_id
from .errors import brief, quoted

_PACKAGE_DIR = Path(__file__).resolve().parent


def preset_dirs() -> list[Path]:
    dirs = [Path.cwd() / "agents", _PACKAGE_DIR.parent / "agents", _PACKAGE_DIR / "_agents"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def preset_paths() -> dict[str, Path]:
    """Preset name -> YAML file (earlier directories win)."""
    found: dict[str, Path] = {}
    for d in preset_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


#: The preset name that means "no preset": the library's defaults, even for an environment
#: that has a preset written for it.
DEFAULTS = "defaults"


def load_preset(name: str) -> TrainConfig:
    """A preset by name (``lunarlander``; ``defaults`` is the library's defaults) or by YAML path."""
    if name == DEFAULTS:
        return TrainConfig()
    if name.endswith((".yaml", ".yml")) or Path(name).is_file():
        return load_config(name)
    paths = preset_paths()
    if name not in paths:
        known = ", ".join(sorted(paths)) or "none found"
        raise ConfigError(f"unknown preset '{name}'; available: {known}")
    return load_config(paths[name])


class PresetWarning(UserWarning):
    """A preset file that cannot be read as one is skipped (the message names the file)."""


def preset_env(path: Path) -> dict[str, Any] | None:
    """The ``env`` section of the preset file ``path``, for matching presets to environments;
    None (after a :class:`PresetWarning` naming the file) when the file is not a preset: not
    YAML, not a mapping of sections, an ``env`` that is not a mapping. Asked for by name, such
    a file is refused instead (:func:`load_preset`)."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES:,} bytes")
        data = read_yaml(path.read_bytes().decode("utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"a YAML {type(data).__name__}, not a mapping of sections")
        env = data.get("env") or {}
        if not isinstance(env, dict) or not isinstance(env.get("kwargs") or {}, dict):
            raise ValueError("its env section (or env.kwargs) is not a mapping")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as exc:
        text = exc.strerror if isinstance(exc, OSError) else brief(exc)
        warnings.warn(f"skipping preset file {quoted(path)}: {text}", PresetWarning, stacklevel=2)
        return None
    return env


def same_environment(preset_id: str, env_id: str) -> bool:
    """Whether a preset written for ``preset_id`` is for ``env_id``: the same id, with or without
    the module that registers it (``minigrid:MiniGrid-Empty-5x5-v0`` and
    ``MiniGrid-Empty-5x5-v0``), but not two modules' factories of the same name
    (``pettingzoo.classic.tictactoe_v3:env`` and ``pettingzoo.classic.connect_four_v3:env``)."""
    preset_module, preset_bare = split_env_id(preset_id)
    module, bare = split_env_id(env_id)
    return preset_bare == bare and (preset_module is None or module is None or preset_module == module)


def preset_for_env(env_id: str, kwargs: dict[str, Any] | None = None) -> str | None:
    """The preset written for ``env_id`` whose ``env.kwargs`` all match ``kwargs``; the most specific wins.

    Presets whose name starts with ``zoo-`` reproduce other libraries' settings and
    are never picked automatically. A file that is not a preset is skipped with a
    :class:`PresetWarning`.
    """
    kwargs = kwargs or {}
    best: tuple[int, str] | None = None
    for name, path in preset_paths().items():
        if name.startswith("zoo-"):
            continue
        env = preset_env(path)
        if env is None:
            continue
        preset_kwargs = env.get("kwargs") or {}
        same_env = same_environment(str(env.get("id")), env_id)
        if not same_env or any(kwargs.get(k) != v for k, v in preset_kwargs.items()):
            continue
        if best is None or len(preset_kwargs) > best[0]:
            best = (len(preset_kwargs), name)
    return best[1] if best else None
