"""``ppo-envkit new-env NAME``: a working environment, its test and a preset, from templates.

``new-env GridWorld`` writes ``envs/grid_world.py`` (class ``GridWorld``, id
``GridWorld-v0``, discrete and continuous variants, ``rgb_array`` rendering),
``tests/test_grid_world.py`` and ``agents/grid-world.yaml``. It never overwrites a
file. The templates are in ``ppo_envkit/environments/templates``.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

import gymnasium as gym

from .registry import ENV_ID_PATTERN

#: Steps the scaffolded preset trains for (it solves the task well before).
SCAFFOLD_TIMESTEPS = 20_000


class ScaffoldError(ValueError):
    """A name that cannot become an environment, or files that already exist."""


@dataclass
class Scaffold:
    """What :func:`scaffold` wrote."""

    env_id: str
    class_name: str
    env_file: Path
    test_file: Path
    preset_file: Path
    files: list[Path] = field(default_factory=list)


def _words(name: str) -> list[str]:
    """``GridWorld``, ``grid-world``, ``grid_world`` -> ``["grid", "world"]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return [w.lower() for w in re.split(r"[\s_\-.]+", spaced) if w]


def names_for(name: str) -> dict[str, str]:
    """Id, class, file and preset names for ``NAME`` (``[namespace/]Name[-vN]``)."""
    env_id = name if re.search(r"-v\d+$", name) else f"{name}-v0"
    match = ENV_ID_PATTERN.match(env_id)
    base = match["name"] if match else ""
    words = _words(base)
    if not match or not words or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", base):
        raise ScaffoldError(
            f"cannot make an environment called {name!r}: use letters, digits, '-' and '_', starting "
            "with a letter, e.g. GridWorld, grid-world or myproject/GridWorld-v1"
        )
    class_name = "".join(w[:1].upper() + w[1:] for w in words)
    if not base[:1].islower() and "_" not in base and "-" not in base:
        class_name = base  # keep the user's own CamelCase (e.g. "PIDTuner")
    if keyword.iskeyword(class_name) or not class_name.isidentifier():
        raise ScaffoldError(f"cannot make an environment called {name!r}: {class_name!r} is not a class name")
    return {
        "env_id": env_id,
        "class_name": class_name,
        "file_stem": "_".join(words),
        "preset": "-".join(words),
        "timesteps": str(SCAFFOLD_TIMESTEPS),
    }


def _template(name: str) -> Template:
    return Template((resources.files("ppo_envkit.environments") / "templates" / name).read_text())


def scaffold(name: str, root: str | Path = ".") -> Scaffold:
    """Write the environment, its test and its preset under ``root``; refuse to overwrite."""
    names = names_for(name)
    if names["env_id"] in gym.registry:
        raise ScaffoldError(f"environment id '{names['env_id']}' is already registered; choose another name")
    root = Path(root)
    plan = {
        root / "envs" / f"{names['file_stem']}.py": "env.py.tmpl",
        root / "tests" / f"test_{names['file_stem']}.py": "test_env.py.tmpl",
        root / "agents" / f"{names['preset']}.yaml": "preset.yaml.tmpl",
    }
    existing = [str(p) for p in plan if p.exists()]
    if existing:
        raise ScaffoldError(
            f"not overwriting existing files: {', '.join(existing)}; choose another name or move them away"
        )
    texts = {path: _template(template).substitute(names) for path, template in plan.items()}
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x") as f:  # "x": fail rather than overwrite, even in a race
            f.write(text)
    env_file, test_file, preset_file = plan
    return Scaffold(names["env_id"], names["class_name"], env_file, test_file, preset_file, list(plan))
