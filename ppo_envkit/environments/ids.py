"""Environment ids as users write them: Gymnasium's ``module:EnvId`` form, and what to say when
an id is unknown.

``minigrid:MiniGrid-DoorKey-5x5-v0`` names the module whose import registers the id (as
``gym.make`` reads it). The id is kept in that form in the settings, so an agent trained on it
records it, and ``eval``/``replay``/``export`` import the same module again. The module is
imported by name, as installed packages are (the current directory is importable, as under
``python -m``), never from a path: an agent file from someone else can name a module, not a file.

When an id is unknown, :func:`provider_hint` imports the well-known environment packages that
are installed (:data:`KNOWN_PACKAGES`: minigrid, ale_py, highway_env, ...) and looks in
Gymnasium's registry for the id; for a package that is not installed it says which
``pip install`` provides ids of that form. (Installed distributions announce no
``gymnasium.envs`` entry points in Gymnasium 1.x, so there is nothing to look up there.)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import warnings
from dataclasses import dataclass

import gymnasium as gym

from ..config import env_id_problem, split_env_id
from .discovery import _import_error, cwd_importable

__all__ = [
    "KNOWN_PACKAGES",
    "EnvNotFoundError",
    "KnownPackage",
    "import_id_module",
    "provider_hint",
    "registered_id",
    "split_env_id",
    "with_module",
]


class EnvNotFoundError(KeyError):
    """An environment id that neither Gymnasium nor a loaded user module registers."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class KnownPackage:
    """An environment package users install: its module, ``pip install`` name, and its ids' form."""

    module: str
    pip: str
    ids: re.Pattern[str]


#: Environment packages whose ids the unknown-id message recognises (imported only when installed).
KNOWN_PACKAGES: tuple[KnownPackage, ...] = (
    KnownPackage("minigrid", "minigrid", re.compile(r"^(MiniGrid|BabyAI)-")),
    KnownPackage("ale_py", "ale-py", re.compile(r"^ALE/")),
    KnownPackage(
        "highway_env",
        "highway-env",
        re.compile(
            r"^(highway|merge|roundabout|parking|intersection|racetrack|exit|lane-keeping|two-way|u-turn)"
            r"(-[\w-]+)?-v\d+$"
        ),
    ),
    KnownPackage(
        "gymnasium_robotics",
        "gymnasium-robotics",
        re.compile(r"^(Fetch|HandManipulate|HandReach|AntMaze|PointMaze|Adroit|FrankaKitchen)"),
    ),
    KnownPackage("miniworld", "miniworld", re.compile(r"^MiniWorld-")),
    KnownPackage("panda_gym", "panda-gym", re.compile(r"^Panda")),
    KnownPackage("shimmy", "'shimmy[dm-control]'", re.compile(r"^dm_control/")),
)


def with_module(original: str, env_id: str) -> str:
    """``env_id`` written with ``original``'s module, if ``original`` had one (a variant's id)."""
    module, _ = split_env_id(original)
    return env_id if module is None or split_env_id(env_id)[0] else f"{module}:{env_id}"


def _known(env_id: str) -> KnownPackage | None:
    return next((p for p in KNOWN_PACKAGES if p.ids.match(env_id)), None)


def import_id_module(module: str, env_id: str) -> None:
    """Import ``module`` (of ``env_id`` written as ``module:id``) by name; one-line errors."""
    problem = env_id_problem(env_id)
    if problem:
        raise EnvNotFoundError(f"unknown environment '{env_id}': {problem}")
    cwd_importable()
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            known = _known(split_env_id(env_id)[1])
            install = f"; {known.module} comes with: pip install {known.pip}" if known else ""
            raise EnvNotFoundError(
                f"unknown environment '{env_id}': no module named '{exc.name}' (the module before ':' "
                f"is imported to register the id){install}"
            ) from None
        raise _import_error(module, exc) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # sys.exit() at import included
        raise _import_error(module, exc) from exc


def registered_id(env_id: str) -> str:
    """The id under which ``env_id`` is registered: ``module:id`` imports ``module`` and gives ``id``."""
    module, bare = split_env_id(env_id)
    if module is not None:
        import_id_module(module, env_id)
    return bare


def _quietly_import(module: str) -> bool:
    """Import an installed package for a hint: its warnings, prints and failures stay quiet."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            importlib.import_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a broken optional package: no hint from it
        return False
    return True


def provider_hint(env_id: str) -> str | None:
    """Which module to name for an unknown ``env_id`` (written without a module), or which
    ``pip install`` provides it; None when no well-known package is known to."""
    known = _known(env_id)
    ordered = sorted(KNOWN_PACKAGES, key=lambda p: p is not known)  # the likely one first
    for package in ordered:
        if _quietly_import(package.module) and env_id in gym.registry:
            return (
                f"the installed package {package.module} registers it: write it as "
                f"'{package.module}:{env_id}' (Gymnasium's module:id form)"
            )
    if known is not None and importlib.util.find_spec(known.module) is None:
        return (
            f"ids like this come from {known.module}: pip install {known.pip}, "
            f"then use '{known.module}:{env_id}'"
        )
    return None
