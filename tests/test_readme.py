"""The README is the front door, so it cannot go stale: every command and Python block it shows is
checked here, and a command that nothing knows how to check fails the test.

* ``ppo-envkit ...`` commands are parsed by the real parser; a ``train`` command's preset,
  ``--set`` values and environment id are resolved into a valid config; the cheap ones run for
  real in a temporary folder (training shrunk to a few hundred steps, evaluations to a couple
  of episodes, replays headless and cut to 40 steps), in the README's order, so that
  ``eval runs/lander`` reads the run that the quick start's ``train ... --run-dir runs/lander``
  wrote.
* Install and test commands must match the project: the torch pin of ``.ci/run``, extras that
  ``pyproject.toml`` declares, and ``python -m pytest -q``, exactly what ``.ci/run`` runs.
* ``python examples/X.py ...``: the script exists and its own parser accepts the arguments.
* Python blocks: one whose first line is ``# PATH.py: ...`` is written to PATH (the README's
  environment goes to ``envs/``, where ppo-envkit finds it); the others are executed with
  ``total_timesteps`` and ``episodes`` shrunk.
* The commands on the docs pages (``docs/*.md``) are parsed the same way, but not run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import re
import runpy
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CI_RUN = ROOT / ".ci" / "run"

MAX_README_LINES = 250
SHELL = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^[ \t]*```([\w-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)`(ppo-envkit [^`]+)`(?!`)")

#: Shrunk values for the commands and Python blocks run for real.
STEPS, EPISODES = 256, 2
#: Steps of a replayed episode (the viewer's environment is given this time limit).
REPLAY_STEPS = 40
#: Appended to a ``train`` command that runs for real: few steps, short episodes, one process.
SHRINK_TRAIN = [
    "--total-timesteps",
    str(STEPS),
    "--num-envs",
    "2",
    "--processes",
    "1",
    "--set",
    "ppo.n_steps=64",
    "--set",
    "ppo.minibatch_size=64",
    "--set",
    "env.max_episode_steps=40",
    "--set",
    "run.eval_interval=0",
    "--no-progress",
]


# ----------------------------------------------------------------------------- extraction


@dataclass
class Command:
    words: list[str]
    where: str  # "README.md:12", for messages

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


@dataclass
class Page:
    path: Path
    shell: list[Command] = field(default_factory=list)
    inline: list[Command] = field(default_factory=list)
    python: list[tuple[str, str]] = field(default_factory=list)  # (where, source)


def read_page(path: Path) -> Page:
    text = path.read_text()
    page = Page(path)
    for match in FENCE.finditer(text):
        lang, body = match.group(1).lower(), match.group(2)
        first = text.count("\n", 0, match.start(2)) + 1
        where = f"{path.name}:{first}"
        if lang == "python":
            page.python.append((where, textwrap.dedent(body)))
        elif lang in SHELL:
            for offset, line in enumerate(textwrap.dedent(body).splitlines()):
                if lang == "console" and not line.startswith("$ "):
                    continue  # a transcript: the command, then its output
                words = shlex.split(line.removeprefix("$ "), comments=True)
                if words and words[0].startswith("[") and page.shell:  # a usage line, continued
                    page.shell[-1].words += words
                    continue
                while words:  # commands chained with &&
                    end = words.index("&&") if "&&" in words else len(words)
                    if words[:end]:
                        page.shell.append(Command(words[:end], f"{path.name}:{first + offset}"))
                    words = words[end + 1 :]
    outside = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for match in INLINE.finditer(outside):
        line = outside.count("\n", 0, match.start()) + 1
        page.inline.append(Command(shlex.split(match.group(1)), f"{path.name}:{line}"))
    return page


def docs_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


# ----------------------------------------------------------------------------- the project's facts


def ci_commands() -> list[str]:
    return [line.strip() for line in CI_RUN.read_text().splitlines() if line.strip()]


def ci_torch_pin() -> str:
    for line in ci_commands():
        found = re.search(r"\btorch==(\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError(".ci/run installs no pinned torch")


def extras() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project.get("optional-dependencies", {}))


# ----------------------------------------------------------------------------- checks per command


PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(\.[\w|]+)?")


def is_synopsis(words: list[str]) -> bool:
    """A usage line (``train ENV_ID [--seed S] [--set KEY=VALUE ...]``) rather than a command."""
    return any("[" in w or "]" in w or w == "..." or PLACEHOLDER.fullmatch(w) for w in words)


def subparser(words: list[str]) -> argparse.ArgumentParser:
    from ppo_envkit.cli import build_parser

    parser = build_parser()
    for word in words:
        choices = next(
            (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if not choices or word not in choices:
            break
        parser = choices[word]
    return parser


def check_synopsis(command: Command) -> None:
    """Every option a usage line shows exists on that command; its choices are allowed ones."""
    parser = subparser(command.words[1:])
    options = {s: a for a in parser._actions for s in a.option_strings}
    words = [w.strip("[]") for w in command.words[1:]]
    for i, word in enumerate(words):
        name = word.split("=")[0]
        if not name.startswith("-"):
            continue
        assert name in options, f"{command}: `{parser.prog}` has no option {name}"
        choices = options[name].choices
        if choices and i + 1 < len(words) and not PLACEHOLDER.fullmatch(words[i + 1]):
            shown = [c for c in words[i + 1].split("|") if c and c != "..."]
            assert set(shown) <= set(choices), f"{command}: {name} takes {sorted(choices)}"


def parse_cli(command: Command) -> argparse.Namespace | None:
    """The real parser of ``ppo-envkit``; an error fails with argparse's message (None for --help)."""
    from ppo_envkit.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(command.words[1:])
    except SystemExit as exc:
        if exc.code == 0 and "--help" in command.words:
            return None
        pytest.fail(f"{command}: the CLI does not parse it ({exc.code}): {err.getvalue().strip()}")
    assert args.command is not None, f"{command}: no command"
    args.argv = command.words[1:]
    return args


def resolve(command: Command, args: argparse.Namespace) -> None:
    """A train command's preset, config file, --set values and environment id give a valid config."""
    if args.command != "train" or args.resume:
        return
    from ppo_envkit.cli.train import resolve_train_config
    from ppo_envkit.errors import ConfigError

    try:
        config, _ = resolve_train_config(args)
    except (ConfigError, KeyError, ValueError) as exc:
        pytest.fail(f"{command}: its settings do not resolve: {exc}")
    assert config.env.id


def parse_example(command: Command) -> None:
    """``python examples/X.py ARGS``: the script's own parser (built in its ``main()``) accepts ARGS."""
    script = ROOT / command.words[1]
    assert script.is_file(), f"{command}: no such script"

    class Parsed(Exception):
        pass

    real = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        real(self, command.words[2:], namespace)
        raise Parsed

    try:
        module = runpy.run_path(str(script), run_name="readme_check")
    except ImportError as exc:
        pytest.fail(f"{command}: the script does not import: {exc}")
    assert "main" in module, f"{command}: the script has no main()"
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
        try:
            with contextlib.redirect_stderr(err):
                module["main"]()
        except Parsed:
            return
        except SystemExit as exc:
            pytest.fail(f"{command}: the script does not parse it ({exc.code}): {err.getvalue().strip()}")
    pytest.fail(f"{command}: the script's main() never parsed its arguments")


def naming_a_command(command: Command) -> bool:
    """Prose that names a command (`ppo-envkit tune`) rather than showing one: the command exists."""
    from ppo_envkit.cli import COMMANDS

    if command.words[0] != "ppo-envkit" or len(command.words) != 2 or command.words[1].startswith("-"):
        return False
    assert command.words[1] in COMMANDS, f"{command}: there is no such command"
    return True


def check_pip(command: Command) -> None:
    words = command.words
    assert words[1] == "install", f"{command}: only pip install is known"
    rest = words[2:]
    if rest[:1] == ["-e"]:
        spec = rest[1]
        found = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
        assert found, f"{command}: install the project from its root ('.' or '.[extra]')"
        missing = set((found.group(1) or "").split(",")) - {""} - extras()
        assert not missing, f"{command}: pyproject.toml has no extra {sorted(missing)}"
        assert rest[2:] == [], f"{command}: unexpected arguments {rest[2:]}"
        return
    pins = [w for w in rest if w.startswith("torch")]
    assert pins, f"{command}: only the project and torch are installed by the docs"
    assert pins == [f"torch=={ci_torch_pin()}"], f"{command}: .ci/run pins torch=={ci_torch_pin()}"
    options = [w for w in rest if w not in pins]
    assert options in ([], ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]), (
        f"{command}: unexpected options {options}"
    )


def check_shell_command(command: Command, venvs: set[str], readme: bool) -> argparse.Namespace | None:
    """Every kind of command the docs show; anything else fails. Returns a parsed ppo-envkit command."""
    words = command.words
    head = words[0]
    if head == "ppo-envkit":
        if not readme and is_synopsis(words):
            check_synopsis(command)
            return None
        args = parse_cli(command)
        if readme and args is not None:
            resolve(command, args)
        return args
    if head in ("python", "python3") and words[1:3] == ["-m", "venv"]:
        assert len(words) == 4, f"{command}: python -m venv DIR"
        venvs.add(words[3])
    elif head in (".", "source"):
        assert len(words) == 2 and words[1].endswith("/bin/activate"), f"{command}: activate a venv"
        assert not readme or words[1].removesuffix("/bin/activate") in venvs, (
            f"{command}: activates a virtual environment that the README never creates"
        )
    elif head == "pip":
        check_pip(command)
    elif head == "python" and words[1:3] == ["-m", "pytest"]:
        assert shlex.join(words) == "python -m pytest -q" or not readme, (
            f"{command}: the README's test command is what .ci/run runs"
        )
        assert "python -m pytest -q" in ci_commands(), ".ci/run no longer runs `python -m pytest -q`"
        for word in words[3:]:
            if word.startswith("tests/"):
                assert (ROOT / word.split("::")[0]).exists(), f"{command}: no {word}"
    elif head == "python" and len(words) > 1 and words[1].startswith("examples/"):
        parse_example(command)
    elif head == "python" and words[1:3] == ["-m", "ppo_envkit"]:
        return check_shell_command(Command(["ppo-envkit", *words[3:]], command.where), venvs, readme)
    elif head == "torchrun":
        assert "-m" in words and words[words.index("-m") + 1] == "ppo_envkit", (
            f"{command}: torchrun -m ppo_envkit"
        )
        rest = words[words.index("-m") + 2 :]
        return check_shell_command(Command(["ppo-envkit", *rest], command.where), venvs, readme)
    elif head == "mkdocs":
        assert words[1] in ("serve", "build"), f"{command}: mkdocs serve or build"
        assert (ROOT / "mkdocs.yml").is_file(), f"{command}: no mkdocs.yml"
    elif head in ("ruff", "tensorboard", "bash"):
        if head == "bash":
            assert (ROOT / words[1]).is_file(), f"{command}: no {words[1]}"
    else:
        pytest.fail(f"{command}: nothing checks this kind of command; teach tests/test_readme.py how")
    return None


# ----------------------------------------------------------------------------- running the cheap ones


def shrunk(args: argparse.Namespace, words: list[str]) -> list[str] | None:
    """The argv to run for real (cheaper), or None for a command that is parsed only."""
    argv = list(words[1:])
    if args.command in ("envs", "plot"):
        return argv
    if args.command == "train":
        if args.resume:
            return None  # would continue the run to its full length
        return [*argv, *SHRINK_TRAIN]
    if args.command == "eval":
        return [*argv, "--episodes", str(EPISODES)]
    if args.command == "replay":
        argv = [*argv, "--headless", "--episodes", "1"]
        return argv if args.record else [*argv, "--record", "replay-check.mp4"]
    return None  # tune, export, bench, new-env: parsed (and resolved) only


class Shrink(ast.NodeTransformer):
    """``total_timesteps=N`` -> STEPS and ``episodes=N`` -> EPISODES in calls."""

    def __init__(self) -> None:
        self.changed = 0
        self.unshrunk: list[int] = []  # lines of learn() calls without total_timesteps=

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "learn":
            if not any(k.arg == "total_timesteps" for k in node.keywords):
                self.unshrunk.append(node.lineno)
        for keyword in node.keywords:
            small = {"total_timesteps": STEPS, "episodes": EPISODES}.get(keyword.arg or "")
            if small is not None:
                keyword.value = ast.Constant(small)
                self.changed += 1
        return node


def file_target(source: str) -> str | None:
    """``# envs/thermostat.py: ...`` on the first line: the block is that file."""
    found = re.match(r"#\s*([\w./-]+\.py)\b", source)
    return found.group(1) if found else None


# ----------------------------------------------------------------------------- tests


def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"


def test_readme_links_point_at_files_and_headings():
    text = README.read_text()
    headings = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.*)$", FENCE.sub("", text), re.M)
    }
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"
        elif anchor:
            assert anchor in headings, f"README.md links to #{anchor}, which is no heading"


@pytest.fixture
def front_door(tmp_path, monkeypatch):
    """A temporary working folder standing for the repository root (the shipped agents linked in),
    where the README's environment file is written; the registrations it makes go afterwards."""
    import gymnasium as gym

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.syspath_prepend(str(tmp_path))
    for shipped in (ROOT / "agents").iterdir():  # the shipped agents, as seen from the repository root
        if shipped.is_dir():
            (tmp_path / "agents").mkdir(exist_ok=True)
            (tmp_path / "agents" / shipped.name).symlink_to(shipped)
    before = set(gym.registry)
    yield tmp_path
    from ppo_envkit.environments.registry import unregister_env

    for env_id in set(gym.registry) - before:
        unregister_env(env_id)


def test_every_readme_command_and_block_is_checked(front_door, monkeypatch, capsys):
    import gymnasium as gym

    from ppo_envkit.agent import PPO
    from ppo_envkit.cli import main
    from ppo_envkit.cli.common import load_user_envs
    from ppo_envkit.config import TrainConfig

    page = read_page(README)
    assert page.shell and page.python, "README.md shows no commands or no Python"

    # Python: files first (the README's environment, in ./envs), then the blocks that run.
    runnable = []
    for where, source in page.python:
        target = file_target(source)
        compile(source, where, "exec")
        if target:
            (front_door / target).parent.mkdir(parents=True, exist_ok=True)
            (front_door / target).write_text(source)
        else:
            runnable.append((where, source))
    before = set(gym.registry)
    load_user_envs()
    readme_envs = set(gym.registry) - before  # registered by the README's environment file
    if any(file_target(s) for _, s in page.python):
        assert readme_envs, "the README's environment file registers no environment"
    masked = any("def action_masks" in s for _, s in page.python if file_target(s))
    real_init = PPO.__init__

    def small_init(self, env=None, config=None, **kwargs):  # one process, a few copies, whatever the preset
        config = (config or TrainConfig()).with_overrides(
            {"run.processes": 1, "env.num_envs": 2, "ppo.n_steps": 64}
        )
        real_init(self, env, config, **kwargs)

    for where, source in runnable:
        tree = Shrink()
        module = ast.fix_missing_locations(tree.visit(ast.parse(source, where)))
        assert not tree.unshrunk, f"{where}: write learn(total_timesteps=...), so that the test can shrink it"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(PPO, "__init__", small_init)
            namespace: dict = {"__name__": "readme_block"}
            exec(compile(module, where, "exec"), namespace)
            for value in namespace.values():
                if isinstance(value, PPO):
                    value.close()

    # Shell commands, in order: all checked, the cheap ones run, replays with short episodes.
    from ppo_envkit.viewer import pane

    real_make_render_env = pane.make_render_env

    def short_render_env(env_id, kwargs, max_episode_steps=None):
        return real_make_render_env(env_id, kwargs, min(max_episode_steps or REPLAY_STEPS, REPLAY_STEPS))

    monkeypatch.setattr(pane, "make_render_env", short_render_env)
    venvs: set[str] = set()
    ran = []
    done: set[tuple[str, str | None]] = set()
    for command in [*page.shell, *page.inline]:
        if naming_a_command(command):
            continue
        args = check_shell_command(command, venvs, readme=True)
        if args is None:
            continue
        argv = shrunk(args, command.words)
        target = (args.command, getattr(args, "agent", None))
        if argv is None or (args.command == "replay" and target in done):
            continue  # expensive, or a second replay of the same agent: parsed and resolved only
        done.add(target)
        code = main(argv)
        output = capsys.readouterr()
        assert code == 0, f"{command}: exit status {code} (ran: {shlex.join(argv)})\n{output.err}{output.out}"
        ran.append(command)
        if args.command == "train" and args.env_id in readme_envs and masked:  # the masks were used
            meta = json.loads((Path(args.run_dir) / "agent" / "agent.json").read_text())
            assert meta.get("action_masks") is True, f"{command}: trained without the environment's masks"
    # the front door's main job runs (shrunk): train, then eval and replay of that run
    assert {c.words[1] for c in ran} >= {"train", "eval", "replay", "envs"}, [str(c) for c in ran]


@pytest.mark.parametrize("path", docs_pages(), ids=lambda p: p.name)
def test_docs_page_commands_parse(path):
    page = read_page(path)
    venvs: set[str] = set()
    for command in page.shell:
        check_shell_command(command, venvs, readme=False)
    for command in page.inline:
        if not naming_a_command(command):
            check_shell_command(command, venvs, readme=False)
    for where, source in page.python:
        compile(source, where, "exec")


def test_the_extraction_sees_chains_comments_and_inline_commands(tmp_path):
    sample = tmp_path / "sample.md"
    sample.write_text(
        "Run `ppo-envkit envs list` here.\n\n```bash\n# a comment line\n"
        "a && b --x 'y z'   # trailing\n```\n\n```python\nprint(1)\n```\n"
    )
    page = read_page(sample)
    assert [c.words for c in page.shell] == [["a"], ["b", "--x", "y z"]]
    assert [c.words for c in page.inline] == [["ppo-envkit", "envs", "list"]]
    assert page.python == [("sample.md:9", "print(1)\n")]
    with pytest.raises(pytest.fail.Exception, match="nothing checks"):
        check_shell_command(page.shell[0], set(), readme=True)
    with pytest.raises(AssertionError, match="no option --bogus"):
        check_shell_command(Command(["ppo-envkit", "train", "ENV_ID", "[--bogus", "N]"], "x"), set(), False)
    with pytest.raises(AssertionError, match="--action-space takes"):
        check_shell_command(
            Command(["ppo-envkit", "train", "ID", "--action-space", "a|b"], "x"), set(), False
        )
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        check_shell_command(
            Command(["ppo-envkit", "eval", "agents/x", "--episodes", "many"], "x"), set(), False
        )
