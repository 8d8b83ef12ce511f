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

#: Entry-point group that installed packages use to announce environment modules.
ENTRY_POINT_GROUP = "ppo_envkit.envs"

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the ppo_envkit package

# Targets loaded in this process, in load order (an ordered set), for worker processes.
_loaded: dict[str, None] = {}
# Folders (and "entry points") already discovered, so discovery runs once per source.
_discovered: set[str] = set()


class EnvModuleError(ValueError):
    """A user module could not be imported. A ValueError so that the CLI reports it in one line."""


@dataclass(frozen=True)
class LoadProblem:
    """A module that discovery could not import (discovery reports and goes on)."""

    source: str
    message: str


def user_location(tb: types.TracebackType | None) -> str | None:
    """``file:line in function`` of the innermost traceback frame in the user's own code.

    Frames inside ppo-envkit, Gymnasium, the standard library and installed packages
    are skipped; if nothing is left, the innermost frame outside ppo-envkit and
    Gymnasium is used (an installed user package); None if there is none.
    """
    import sysconfig

    frames = traceback.extract_tb(tb)
    if not frames:
        return None
    library = {
        Path(p).resolve() for k, p in sysconfig.get_paths().items() if k in ("stdlib", "purelib", "platlib")
    }
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

    frame = pick(library | {_PACKAGE_DIR, gym_dir}) or pick({_PACKAGE_DIR, gym_dir})
    return f"{display_path(frame.filename)}:{frame.lineno} in {frame.name}" if frame else None


def display_path(path: str | Path) -> str:
    """``path`` relative to the current directory when it lies below it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def _import_error(target: str, exc: BaseException) -> EnvModuleError:
    where = user_location(exc.__traceback__)
    at = f" at {where}" if where else ""
    return EnvModuleError(
        f"could not import environment module {target}: {type(exc).__name__}: {exc}{at} "
        "(--debug shows the traceback)"
    )


def _module_name_for_file(path: Path) -> str:
    return f"ppo_envkit_user_{path.stem}_{zlib.crc32(str(path).encode()):08x}"


def _module_of_file(path: Path) -> types.ModuleType | None:
    """A module already imported from ``path`` (by any name), if there is one."""
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file) == path:
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
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = name.split(".")[0]
        if exc.name not in (name, top) or cwd in sys.path or "" in sys.path:
            raise
        # `ppo-envkit` runs from a console script, whose sys.path lacks the current
        # directory; `python -m` has it. Let modules next to the user resolve either way.
        sys.path.append(cwd)
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc2:
            if exc2.name in (name, top):
                sys.path.remove(cwd)
            raise


def load_env_module(target: str) -> None:
    """Import what ``target`` names, so that it registers its environments.

    ``target`` is a ``.py`` file, a folder of them, a dotted module name, or
    ``module:function`` (the function is called after the import). Loading the same
    target twice does nothing. Import failures raise :class:`EnvModuleError` naming
    the file and line.
    """
    path = Path(target)
    module_name = target.partition(":")[0]
    try:
        if target.endswith(".py") or path.exists():
            path = path.resolve()
            if not path.exists():
                raise FileNotFoundError(f"environment module file not found: {target}")
            key = str(path)
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
    except (EnvModuleError, FileNotFoundError):
        raise
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise EnvModuleError(
                f"no module named '{exc.name}' (environment module {target}); pass a .py file path, "
                "or a module importable from the current directory or an installed package"
            ) from exc
        raise _import_error(target, exc) from exc
    except Exception as exc:
        raise _import_error(target, exc) from exc
    _loaded[key] = None


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


def loader_state() -> tuple[dict[str, None], set[str], set[str]]:
    """A copy of what was loaded and discovered (see :func:`restore_loader_state`)."""
    return dict(_loaded), set(_discovered), set(sys.modules)


def restore_loader_state(state: tuple[dict[str, None], set[str], set[str]]) -> None:
    """Forget loads made since :func:`loader_state`, so that they can happen again (tests)."""
    loaded, discovered, modules = state
    _loaded.clear()
    _loaded.update(loaded)
    _discovered.clear()
    _discovered.update(discovered)
    for name in [n for n in sys.modules if n not in modules and n.startswith("ppo_envkit_user_")]:
        del sys.modules[name]
