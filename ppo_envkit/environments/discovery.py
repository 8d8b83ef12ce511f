"""Finding user environments: modules and files, ``./envs/``, and installed packages.

Three sources register environments (by importing code that calls
:func:`~ppo_envkit.environments.registry.register_env`):

* ``--env-module MODULE_OR_FILE`` / :func:`load_env_module`: a dotted module name
  (``mypkg.envs``), a ``module:function`` to call, a ``.py`` file or a folder of them;
* the ``envs/`` folder of the current directory (:func:`discover_envs`);
* the ``ppo_envkit.envs`` entry-point group of installed packages, whose values are
  ``module`` or ``module:function`` (``[project.entry-points."ppo_envkit.envs"]``).

Every import is recorded (:func:`user_modules`) so that worker processes of
asynchronous vector environments, which may start from a fresh interpreter
(``spawn``/``forkserver``), import the same code before building their copy. Loading
the same file or module twice is a no-op, whatever route it came by.

Imports behave like Python's: a loaded file's folder goes on ``sys.path``, as running
the file would put it there, and so does the current directory, as ``python -m`` does
(console scripts such as ``ppo-envkit`` lack it). A ``gym.register(...,
entry_point="hover_env:Hover")`` next to the user's file then finds ``hover_env``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
import types
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

#: Entry-point group that installed packages use to announce environment modules.
ENTRY_POINT_GROUP = "ppo_envkit.envs"

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the ppo_envkit package

# Targets loaded in this process, in load order (an ordered set), for worker processes.
_loaded: dict[str, None] = {}
# Environment id -> the target whose import registered it (for error messages).
_registered_by: dict[str, str] = {}
# sys.path entries added here, so that tests can take them away again.
_added_paths: list[str] = []
# Folders (and "entry points") already discovered, so discovery runs once per source.
_discovered: set[str] = set()


class EnvModuleError(ValueError):
    """A user module could not be imported. A ValueError so that the CLI reports it in one line."""


@dataclass(frozen=True)
class LoadProblem:
    """A module that discovery could not import (discovery reports and goes on)."""

    source: str
    message: str


def make_importable(folder: str | Path) -> None:
    """Put ``folder`` first on ``sys.path`` (once), as Python does for the folder of a script."""
    entry = str(Path(folder).resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)
        _added_paths.append(entry)


def cwd_importable() -> None:
    """Make the current directory importable, as ``python -m`` does."""
    if "" not in sys.path:
        make_importable(os.getcwd())


def registered_by(env_id: str) -> str | None:
    """The file or module whose import registered ``env_id``, when ppo-envkit imported it."""
    return _registered_by.get(env_id)


def user_location(tb: types.TracebackType | list[traceback.FrameSummary] | None) -> str | None:
    """``file:line in function`` of the innermost traceback frame in the user's own code
    (``tb`` is a traceback, or its frames, e.g. parsed from another process's traceback).

    Frames inside ppo-envkit, Gymnasium, the standard library and installed packages
    are skipped; if nothing is left, the innermost frame in an installed package other
    than those (a user's installed package) is used; None if there is none: a line of
    the standard library or of ppo-envkit is never the user's to fix.
    """
    import sysconfig

    frames = tb if isinstance(tb, list) else traceback.extract_tb(tb)
    if not frames:
        return None
    paths = sysconfig.get_paths()
    stdlib = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib") if k in paths}
    library = stdlib | {Path(paths[k]).resolve() for k in ("purelib", "platlib") if k in paths}
    gym_dir = Path(importlib.util.find_spec("gymnasium").origin or ".").resolve().parent  # type: ignore[union-attr]

    def inside(path: Path, dirs: set[Path]) -> bool:
        return any(path.is_relative_to(d) for d in dirs)

    def pick(excluded: set[Path]) -> traceback.FrameSummary | None:
        for frame in reversed(frames):
            if frame.filename.startswith("<"):
                continue
            if not inside(Path(frame.filename).resolve(), excluded):
                return frame
        return None

    frame = pick(library | {_PACKAGE_DIR, gym_dir}) or pick(stdlib | {_PACKAGE_DIR, gym_dir})
    return f"{display_path(frame.filename)}:{frame.lineno} in {frame.name}" if frame else None


def display_path(path: str | Path) -> str:
    """``path`` relative to the current directory when it lies below it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def _import_error(target: str, exc: BaseException, what: str = "environment module") -> EnvModuleError:
    where = user_location(exc.__traceback__)
    at = f" at {where}" if where else ""
    return EnvModuleError(
        f"could not import {what} {target}: {type(exc).__name__}: {exc}{at} (--debug shows the traceback)"
    )


def _failed_import(
    exc: BaseException, target: str, module_name: str, context: str = "", what: str = "environment module"
) -> EnvModuleError:
    """What to raise when importing ``module_name`` (for ``target``) raised ``exc``: for the
    module itself missing, one line saying how to name it; else :func:`_import_error` (the
    exception, and where in the user's code)."""
    missing = isinstance(exc, ModuleNotFoundError) and exc.name
    if missing and (exc.name == module_name or module_name.startswith(f"{exc.name}.")):
        prefix = "" if context else f"{what} {target}: "
        return EnvModuleError(
            f"{prefix}no module named '{exc.name}'{' ' + context if context else ''}; pass a .py file "
            "path, or a module importable from the current directory or an installed package"
        )
    return _import_error(target, exc, what)


def _module_name_for_file(path: Path) -> str:
    return f"ppo_envkit_user_{path.stem}_{zlib.crc32(str(path).encode()):08x}"


def _module_of_file(path: Path) -> types.ModuleType | None:
    """A module already imported from ``path`` (by any name), if there is one."""
    name = path.name  # a cheap test first: this runs per module and per environment copy
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and str(file).endswith(name) and Path(file) == path:
            return module
    return None


def _load_file(path: Path) -> types.ModuleType:
    """Import one ``.py`` file under a stable name derived from its path.

    A file inside a package folder (one with ``__init__.py``) is imported as a
    submodule of that package, so that its relative imports work.
    """
    existing = _module_of_file(path)
    if existing is not None:
        return existing
    package_dir = path.parent
    if path.name == "__init__.py":
        name = _module_name_for_file(package_dir)
        search: list[str] | None = [str(package_dir)]
    elif (package_dir / "__init__.py").is_file():
        parent = _load_file(package_dir / "__init__.py")
        name, search = f"{parent.__name__}.{path.stem}", None
    else:
        name, search = _module_name_for_file(path), None
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise EnvModuleError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith(("_", "test_")))


def _import_module(name: str) -> types.ModuleType:
    cwd_importable()  # modules next to the user resolve as under `python -m`
    return importlib.import_module(name)


def load_env_module(target: str) -> None:
    """Import what ``target`` names, so that it registers its environments.

    ``target`` is a ``.py`` file, a folder of them, a dotted module name, or
    ``module:function`` (the function is called after the import). Loading the same
    target twice does nothing. Import failures raise :class:`EnvModuleError` naming
    the file and line.
    """
    path = Path(target)
    module_name = target.partition(":")[0]
    before = set(gym.registry)
    try:
        if target.endswith(".py") or path.exists():
            path = path.resolve()
            if not path.exists():
                raise FileNotFoundError(f"environment module file not found: {target}")
            key = str(path)
            make_importable(path if path.is_dir() else path.parent)  # as `python FILE.py` would
            files = _python_files(path) if path.is_dir() else [path]
            if path.is_dir() and (path / "__init__.py").is_file():
                files.insert(0, path / "__init__.py")
            for file in files:
                _load_file(file)
        else:
            func = target.partition(":")[2]
            key = target
            module = _import_module(module_name)
            if func:
                fn = getattr(module, func, None)
                if not callable(fn):
                    raise EnvModuleError(f"{target}: module {module_name} has no function {func!r}")
                if key not in _loaded:
                    fn()
    except (EnvModuleError, FileNotFoundError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # sys.exit() at import included: never a silent exit
        raise _failed_import(exc, target, module_name, f"(environment module {target})") from exc
    _loaded[key] = None
    shown = display_path(key) if key.endswith(".py") or Path(key).is_dir() else key
    for env_id in set(gym.registry) - before:
        _registered_by.setdefault(env_id, shown)


def import_named(target: str, what: str = "callback") -> Any:
    """The object ``target`` names: ``MODULE:NAME``, where ``MODULE`` is a dotted module name
    (importable from the current directory or an installed package) or a ``.py`` file,
    imported as ``--env-module`` imports it (so the file may register environments too)."""
    module_part, sep, name = target.rpartition(":")
    if not sep or not module_part or not name:
        raise EnvModuleError(f"{what} {target!r}: write MODULE:NAME (a module or a .py file, then a name)")
    try:
        if module_part.endswith(".py") or Path(module_part).exists():
            path = Path(module_part).resolve()
            if not path.is_file():
                raise EnvModuleError(f"{what} {target}: file not found: {module_part}")
            make_importable(path.parent)
            module = _load_file(path)
        else:
            module = _import_module(module_part)
    except (EnvModuleError, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise _failed_import(exc, target, module_part, what=what) from exc
    if not hasattr(module, name):
        raise EnvModuleError(f"{what} {target}: module {module_part} has no {name!r}")
    return getattr(module, name)


def user_modules() -> list[str]:
    """Targets loaded with :func:`load_env_module` in this process, in load order (for workers)."""
    return list(_loaded)


def entry_point_targets() -> list[str]:
    """Values of the ``ppo_envkit.envs`` entry points of installed packages."""
    return sorted({ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def discover_envs(
    folder: str | Path | None = None, *, entry_points: bool = True, again: bool = False
) -> list[LoadProblem]:
    """Import ``./envs/*.py`` (or ``folder``) and installed ``ppo_envkit.envs`` entry points.

    Runs once per source and process (``again``: look again, e.g. after installing a
    package; files already imported are not imported twice). Returns the sources that failed to import (each
    with a readable message) instead of raising, so that one broken file does not
    stop ``envs list`` or the training of another environment.
    """
    problems: list[LoadProblem] = []
    folder = Path("envs") if folder is None else Path(folder)
    sources: list[str] = []
    if folder.is_dir():
        key = str(folder.resolve())
        if again or key not in _discovered:
            _discovered.add(key)
            files = _python_files(folder)
            if (folder / "__init__.py").is_file():
                files.insert(0, folder / "__init__.py")
            sources += [str(f.resolve()) for f in files]
    if entry_points and (again or "entry-points" not in _discovered):
        _discovered.add("entry-points")
        sources += entry_point_targets()
    for source in sources:
        try:
            load_env_module(source)
        except (EnvModuleError, FileNotFoundError) as exc:
            problems.append(LoadProblem(display_path(source) if source.endswith(".py") else source, str(exc)))
    return problems


def loader_state() -> tuple[Any, ...]:
    """A copy of what was loaded and discovered (see :func:`restore_loader_state`)."""
    return dict(_loaded), set(_discovered), set(sys.modules), dict(_registered_by), len(_added_paths)


def restore_loader_state(state: tuple[Any, ...]) -> None:
    """Forget loads made since :func:`loader_state`, so that they can happen again (tests)."""
    loaded, discovered, modules, registered, paths = state
    _loaded.clear()
    _loaded.update(loaded)
    _discovered.clear()
    _discovered.update(discovered)
    _registered_by.clear()
    _registered_by.update(registered)
    removed = [Path(entry) for entry in _added_paths[paths:]]
    for entry in _added_paths[paths:]:
        if entry in sys.path:
            sys.path.remove(entry)
    del _added_paths[paths:]

    def from_removed_folder(module: types.ModuleType) -> bool:
        file = getattr(module, "__file__", None)
        return bool(file) and any(Path(file).resolve().is_relative_to(folder) for folder in removed)

    for name in [n for n in sys.modules if n not in modules]:
        if name.startswith("ppo_envkit_user_") or from_removed_folder(sys.modules[name]):
            del sys.modules[name]
