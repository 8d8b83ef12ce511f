"""Every training setting as a pydantic model, with YAML load/dump and dotted overrides.

Settings live in four sections, ``env``, ``policy``, ``ppo`` and ``run``. Each field
documents itself and validates its range, so a bad value is reported with the
field's dotted name and what it accepts (see :func:`format_validation_error`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .config_messages import format_validation_error
from .errors import ConfigError, brief, quoted

__all__ = [
    "IMAGE_DEFAULTS",
    "STORED_BEFORE",
    "ConfigError",
    "EnvConfig",
    "PPOConfig",
    "PolicyConfig",
    "RunConfig",
    "SelfPlayConfig",
    "TimeLimitSetting",
    "TrainConfig",
    "WrapperSpec",
    "apply_overrides",
    "as_stored_before",
    "env_id_problem",
    "explicitly_set",
    "format_validation_error",
    "load_config",
    "read_yaml",
    "split_env_id",
    "with_image_defaults",
]

#: ``env.time_limit``'s values (:func:`ppo_envkit.environments.multiagent.resolve_time_limit`
#: turns ``auto`` into one of the other two once the environment is built).
TimeLimitSetting = Literal["auto", "bootstrap", "terminal"]

#: A dotted Python name: ``minigrid``, ``gymnasium.wrappers``.
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
#: ``module:Callable``, both dotted names (an importable module, never a file path).
WRAPPER_NAME = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
_MODULE_NAME = re.compile(rf"^{_DOTTED}$")


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``"minigrid:MiniGrid-Empty-5x5-v0"`` -> ``("minigrid", "MiniGrid-Empty-5x5-v0")``: Gymnasium's
    ``module:EnvId`` form (``gym.make`` imports the module, which registers the id). An id
    without a module gives ``(None, env_id)``. The module is not imported here."""
    module, sep, rest = env_id.partition(":")
    return (module, rest) if sep else (None, env_id)


def env_id_problem(env_id: str) -> str | None:
    """What is wrong with the module of a ``module:id`` (None: nothing, or no module)."""
    module, rest = split_env_id(env_id)
    if module is not None and not (_MODULE_NAME.match(module) and rest and not module.endswith(".py")):
        return (
            "in module:id, the part before ':' names an installed module (as in "
            "minigrid:MiniGrid-Empty-5x5-v0), not a file; for a file use --env-module FILE.py"
        )
    return None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` is not 1: pydantic's lax mode would take a boolean for an int or float."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in get_args(annotation) and annotation is not Any:
                raise ValueError("expects a number, not true/false")
        return value


class WrapperSpec(BaseModel):
    """One Gymnasium wrapper by name: ``module:Class`` and its keyword arguments.

    Written in settings as ``minigrid.wrappers:ImgObsWrapper``, as
    ``{gymnasium.wrappers:AtariPreprocessing: {frame_skip: 1}}`` or as
    ``{name: gymnasium.wrappers:AtariPreprocessing, kwargs: {frame_skip: 1}}``. A name, never
    code: the module is imported as installed packages are (never from a path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="module:Class of a gymnasium.Wrapper subclass")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the wrapper")

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and len(value) == 1 and "name" not in value:
            ((name, kwargs),) = value.items()
            return {"name": name, "kwargs": {} if kwargs is None else kwargs}
        if isinstance(value, dict) and not set(value) <= {"name", "kwargs"}:
            raise ValueError(
                f"unknown key(s) {sorted(map(str, set(value) - {'name', 'kwargs'}))}: a wrapper is "
                "'module:Class', {module:Class: {keyword: value}} or {name: module:Class, kwargs: {...}}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        name = name.strip()
        if not WRAPPER_NAME.match(name) or name.partition(":")[0].endswith(".py"):
            raise ValueError(
                f"{name!r} is not 'module:Class' (e.g. minigrid.wrappers:ImgObsWrapper): the name of an "
                "importable module, a colon, then the wrapper class; never a file path"
            )
        return name

    @field_validator("kwargs")
    @classmethod
    def _check_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in kwargs if not (isinstance(k, str) and k.isidentifier())]
        if bad:
            raise ValueError(f"keyword argument names must be identifiers, got {bad[0]!r}")
        return kwargs

    def label(self) -> str:
        """``module:Class(key=value, ...)``, as messages show it."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.name}({args})" if args else self.name


class EnvConfig(_Section):
    """Which environment to train on and how to run its copies."""

    id: str = Field(
        "CartPole-v1",
        description="Gymnasium environment id, e.g. LunarLander-v3; module:id (Gymnasium's form, "
        "e.g. minigrid:MiniGrid-DoorKey-5x5-v0) imports the installed module that registers it.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the environment constructor."
    )
    num_envs: int = Field(16, ge=1, le=4096, description="Number of environment copies stepped together.")
    vectorization: Literal["sync", "async", "ale"] = Field(
        "sync",
        description="sync: all copies in this process. async: copies step in worker processes. "
        "ale: Atari games (ale_py ids) stepped and preprocessed by the ALE's own C++ vector on a "
        "thread per core, from the same settings (env.wrappers AtariPreprocessing, optionally "
        "ClipReward(-1, 1); env.frame_stack; env.seed_every_episode=false): 1.7x the Python path's "
        "steps/s on 2 cores.",
    )
    num_workers: int | None = Field(
        None,
        ge=1,
        le=256,
        description="async only: processes that step the copies, this one included, each stepping a "
        "shard of them (2 on a 2-core machine keeps both cores busy). Default: one worker process per "
        "copy (Gymnasium's AsyncVectorEnv).",
    )
    max_episode_steps: int | None = Field(
        None, ge=1, description="Override the environment's time limit (truncation)."
    )
    seed_every_episode: bool = Field(
        True,
        description="Seed every episode's reset from (the copy's seed, the episode's number), so that "
        "resuming rebuilds the episode in progress exactly. false: seed only the first reset, for "
        "environments whose seeded reset is slow (the ALE reloads its ROM on each: 13 % of Atari "
        "training's CPU time); a resume then starts new episodes.",
    )
    time_limit: TimeLimitSetting = Field(
        "auto",
        description="How training treats an episode cut by a time limit (truncated, for several "
        "agents each agent's truncation): bootstrap from the value of its final observation (the "
        "time limit cuts a longer task, as Gymnasium means truncation), or terminal: the end of the "
        "task, no value after it (the score is the return within the limit, as in a fixed-length "
        "game whose observation does not show the time left). auto (the default): terminal for "
        "PettingZoo environments (max_cycles is the game's length, as SB3 sees it through "
        "SuperSuit), bootstrap for Gymnasium ones. Agent files and runs saved before auto was the "
        "default keep the value they were trained with (bootstrap). Measured: docs/several-agents.md.",
    )
    wrappers: list[WrapperSpec] = Field(
        default_factory=list,
        description="Gymnasium wrappers applied in order around the environment (innermost first, "
        "before frame stacking): module:Class, or {module:Class: {keyword: value}}; e.g. "
        "[minigrid.wrappers:ImgObsWrapper]. Imported by name from installed packages (or modules "
        "next to you), remembered in the agent file, so eval, replay and export apply them too.",
    )
    frame_stack: int = Field(
        1,
        ge=1,
        le=64,
        description="Observe the last N observations stacked (Gymnasium's FrameStackObservation; "
        "1: no stacking). Remembered in the agent file, so eval and replay stack the same way.",
    )
    action_masks: Literal["auto", "off"] = Field(
        "auto",
        description="auto: use the environment's action masks (action_masks() or "
        'info["action_mask"]) when it gives them. off: ignore them (the policy may choose any action).',
    )
    agent_id: bool = Field(
        False,
        description="Several agents (PettingZoo parallel environments): append each agent's one-hot "
        "index among the environment's possible agents to its observation, so that one shared policy "
        "can act differently per agent.",
    )
    normalize_obs: bool = Field(True, description="Normalize observations with running mean/std.")
    normalize_reward: bool = Field(
        True, description="Scale rewards by the running std of the discounted return."
    )
    clip_obs: float = Field(10.0, gt=0, description="Clip normalized observations to +-clip_obs.")
    clip_reward: float = Field(10.0, gt=0, description="Clip scaled rewards to +-clip_reward.")

    @field_validator("id")
    @classmethod
    def _check_id(cls, env_id: str) -> str:
        problem = env_id_problem(env_id)
        if problem:
            raise ValueError(problem)
        return env_id

    @field_validator("wrappers", mode="before")
    @classmethod
    def _one_wrapper(cls, value: Any) -> Any:
        """One wrapper needs no list: ``--set env.wrappers=minigrid.wrappers:ImgObsWrapper``."""
        if value is None:
            return []
        return [value] if isinstance(value, str | dict) else value


class PolicyConfig(_Section):
    """Shape of the actor-critic network and its action head."""

    hidden_sizes: list[int] = Field(
        default_factory=lambda: [64, 64], description="Widths of the hidden layers of each trunk."
    )
    activation: Literal["tanh", "relu", "elu", "gelu", "silu", "leaky_relu"] = Field(
        "tanh", description="Activation of the hidden layers."
    )
    shared_trunk: bool = Field(
        False, description="Actor and critic share one trunk (True) or have one each (False)."
    )
    ortho_init: bool = Field(
        True,
        description="Orthogonal init: gain sqrt(2) hidden, 0.01 policy output, 1.0 value output.",
    )
    log_std_init: float = Field(
        0.0, ge=-20, le=5, description="Initial log standard deviation of Gaussian heads."
    )
    squash: bool = Field(
        False,
        description="Gaussian heads: squash samples with tanh into the Box bounds "
        "(log-probabilities carry the log-det correction).",
    )

    composite: Literal["independent", "conditional"] = Field(
        "independent",
        description="Tuple/Dict action spaces: independent parts, or conditional (each Box part's "
        "mean is chosen by the first Discrete part's action: one mean per choice).",
    )
    composite_params: Literal["auto", "all", "chosen"] = Field(
        "auto",
        description="Tuple/Dict action spaces of a Discrete(k) choice and a Tuple/Dict of k Box "
        "parameter parts (the i-th belongs to choice i): all parts count in the loss, or only the "
        "chosen choice's parameters (chosen; the choice then starts with probabilities in proportion "
        "to the volumes of the parameter boxes); auto: chosen for a space with that layout, else all.",
    )
    composite_std: Literal["auto", "fixed", "state"] = Field(
        "auto",
        description="Tuple/Dict action spaces: the standard deviation of each Box part is one learned "
        "number per dimension, the same in every state (fixed), or an output of the network as the "
        "mean is (state); auto: state where only the chosen parameters count (composite_params), else "
        "fixed. A Box action space on its own always has the fixed one.",
    )
    box_coords: Literal["auto", "env", "normalized"] = Field(
        "auto",
        description="Gaussian Box heads (not squashed): the mean and standard deviation in the "
        "environment's units (env), or in the box's own coordinates (normalized: mean 0 is the centre "
        "of the box, std 1 its half-width, mapped affinely to the bounds before clipping; unbounded "
        "dimensions as they are); auto: normalized for the Box parts of a Tuple/Dict action space, "
        "env for a Box action space.",
    )
    box_distribution: Literal["auto", "gaussian", "gaussian-censored", "beta", "beta-softplus"] = Field(
        "auto",
        description="Distribution of Box actions: a Gaussian (clipped to the bounds, or squashed with "
        "squash); gaussian-censored: clipped, with a draw clipped to a bound scored by the probability "
        "of its whole tail rather than the density at the draw (Fujita and Maeda 2018), or a Beta on "
        "the box (finite bounds; both concentrations at least 1 and outputs of "
        "the network, so the spread is per state; greedy action: its mode): beta is parametrized by "
        "its mode (sigmoid) and log-concentration, beta-softplus by alpha, beta = 1 + softplus "
        "(Chou et al. 2017); auto: gaussian.",
    )

    image_encoder: Literal["auto", "nature", "small", "none"] = Field(
        "auto",
        description="Encoder of image observations (uint8 Box, 0..255, (H, W, C) or (C, H, W)): "
        "nature (NatureCNN, for 36 px and up), small (3 small convolutions, any size), auto "
        "(nature from 36 px, else small), none (flatten images into the MLP like any Box).",
    )
    cnn_features: int = Field(
        256, ge=1, le=8192, description="Output width of the image encoder's last (linear) layer."
    )
    cnn_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="What the image encoder computes in while training (collection and updates; "
        "weights, gradients and Adam stay float32; eval, predict and export are float32): bfloat16 "
        "autocast, float32, or auto (bfloat16 where the device has it natively: CPUs with AMX or "
        "AVX512-BF16, CUDA GPUs from Ampere on; else float32).",
    )
    recurrent: Literal["none", "lstm", "gru"] = Field(
        "none",
        description="A recurrent core (memory) between the observation encoder and the trunks, "
        "shared by actor and critic: lstm, gru, or none (feed-forward).",
    )
    recurrent_size: int = Field(64, ge=1, le=4096, description="Hidden units of the recurrent core.")
    text_hash_size: int = Field(
        128,
        ge=0,
        le=65536,
        description="Columns of each text entry of an observation (gymnasium Text, MiniGrid's mission): "
        "its words are hashed into this many buckets and counted (a bag of words; the first layer "
        "learns each bucket's embedding). 0 refuses text observations.",
    )

    @field_validator("hidden_sizes")
    @classmethod
    def _check_sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes:
            raise ValueError("needs at least one layer, e.g. [64, 64]")
        if any(h < 1 or h > 65536 for h in sizes):
            raise ValueError("each width must be between 1 and 65536")
        return sizes


class PPOConfig(_Section):
    """PPO hyperparameters; names follow Stable-Baselines3 and CleanRL."""

    n_steps: int = Field(128, ge=1, description="Steps per environment copy in each rollout.")
    minibatch_size: int = Field(
        64, ge=1, description="Samples per gradient step (SB3 calls this batch_size)."
    )
    n_epochs: int = Field(10, ge=1, le=1000, description="Passes over each rollout.")
    learning_rate: float = Field(3e-4, gt=0, le=1, description="Adam step size.")
    anneal_lr: bool = Field(False, description="Decay the learning rate linearly to 0 over total_timesteps.")
    adam_eps: float = Field(1e-5, gt=0, le=1, description="Adam epsilon.")
    gamma: float = Field(0.99, ge=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(0.98, ge=0, le=1, description="GAE lambda.")
    clip_coef: float = Field(0.2, gt=0, le=10, description="PPO ratio clip range epsilon.")
    clip_vloss: bool = Field(
        False, description="Clip the value update to +-vf_clip_coef around the old value."
    )
    vf_clip_coef: float | None = Field(None, gt=0, description="Value clip range (defaults to clip_coef).")
    ent_coef: float = Field(0.0, ge=0, le=10, description="Entropy bonus coefficient.")
    vf_coef: float = Field(0.5, ge=0, le=100, description="Value loss coefficient.")
    max_grad_norm: float = Field(0.5, gt=0, description="Global gradient-norm clip.")
    norm_adv: bool = Field(True, description="Normalize advantages per minibatch.")
    target_kl: float | None = Field(
        None, gt=0, description="Stop the epoch loop early when approx-KL exceeds this."
    )
    sequence_length: int = Field(
        32,
        ge=1,
        le=65536,
        description="Recurrent policies: minibatches are built from whole sequences of this many "
        "consecutive steps of one copy (backpropagation through time over them); must divide n_steps.",
    )


class RunConfig(_Section):
    """How long to train, where to write, on what device."""

    total_timesteps: int = Field(100_000, ge=1, description="Environment steps to train for.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed for environments and torch.")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu",
        description=(
            "Torch device (auto: cuda when available). The CPU is the default because these small "
            "MLPs train faster there: on an H200 machine, cuda ran the lunarlander preset at 0.62x "
            "the CPU's steps/s."
        ),
    )
    torch_threads: int | None = Field(
        None,
        ge=0,
        le=256,
        description="Torch CPU threads (0: torch's default, one per core). Default: 1 for MLP policies "
        "(small MLPs run best with 1), torch's default for policies with an image encoder "
        "(convolutions use every core: 1.6x faster updates on 2 cores).",
    )
    analytic_gradients: bool = Field(
        True,
        description=(
            "Compute the PPO gradient with written-out formulas instead of autograd where the policy "
            "allows it (MLP trunks with tanh/ReLU, categorical or plain Gaussian heads): the same "
            "gradient at about half the cost of a small-network step. false: always autograd."
        ),
    )
    compile: bool = Field(
        False,
        description=(
            "Compile the autograd PPO loss with torch.compile where the numpy fast path does not serve "
            "(analytic_gradients false, or a policy it does not cover). Compiling costs ~15 s once; "
            "docs/performance.md compares both."
        ),
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Training processes on this machine (Linux/macOS). They split env.num_envs and every "
            "minibatch, and combine gradients and statistics through shared memory, like torchrun "
            "ranks but with microsecond collectives: 2 on a 2-core machine keeps both cores busy. "
            "Ignored under torchrun, which decides the number of ranks itself."
        ),
    )
    run_dir: str | None = Field(None, description="Directory for logs and checkpoints.")
    checkpoint_interval: int = Field(
        100_000, ge=0, description="Save a checkpoint every this many steps (0: only at the end)."
    )
    keep_checkpoints: int = Field(3, ge=1, description="How many periodic checkpoints to keep.")
    log_window: int = Field(
        20, ge=1, description="Episodes averaged for the 'recent return' shown while training."
    )
    info_keywords: list[str] = Field(
        default_factory=list,
        description=(
            "Plain info keys logged per episode, as SB3's Monitor(info_keywords=...) does: each "
            "episode's value at its last step, averaged over the last log_window episodes (numbers "
            'in info["metrics"] = {name: value} are logged without this: averaged over each '
            "episode's steps, then over episodes)."
        ),
    )
    eval_interval: int | Literal["auto"] = Field(
        "auto",
        description=(
            "Evaluate (deterministic episodes on separate copies, fixed seeds) every this many steps, "
            "and once at the end; the best agent goes to RUN_DIR/best/. 0: never. auto: evaluation "
            "steps kept to about 2.5% of training steps (every 40 x eval_episodes x the mean length of "
            "the last evaluation's episodes, at least 10,000 steps)."
        ),
    )
    eval_episodes: int = Field(5, ge=1, le=10_000, description="Episodes per evaluation.")
    stop_at: float | Literal["threshold"] | None = Field(
        None,
        description=(
            "Stop training once an evaluation's mean return reaches this value; threshold: the "
            "environment's reward_threshold. None: train for total_timesteps."
        ),
    )

    eval_video: bool = Field(
        False,
        description=(
            "After each evaluation during training, play one more episode (deterministic, rendered with "
            "render_mode=rgb_array in a separate copy) and write it as a TensorBoard video (eval/video, "
            "in the Images tab), as RUN_DIR/videos/eval_STEP.mp4 and to W&B (run.wandb). Needs a run "
            "directory and an environment that renders rgb_array; costs one rendered episode per "
            "evaluation (docs/callbacks.md gives the measured seconds)."
        ),
    )
    wandb: bool = Field(
        False,
        description=(
            "Also log to Weights & Biases (pip install 'ppo-envkit[wandb]'): the metrics TensorBoard "
            "gets, the settings, and the evaluation videos (run.eval_video). WANDB_MODE=offline logs "
            "without a network (wandb sync uploads later)."
        ),
    )
    wandb_project: str | None = Field(None, description="W&B project (None: ppo-envkit).")
    wandb_entity: str | None = Field(None, description="W&B entity, a user or team (None: your default).")
    wandb_group: str | None = Field(None, description="W&B group (runs compared together, seeds say).")
    wandb_tags: list[str] = Field(default_factory=list, description="W&B tags of the run.")

    @field_validator("eval_interval")
    @classmethod
    def _check_eval_interval(cls, value: int | str) -> int | str:
        if isinstance(value, int) and (isinstance(value, bool) or value < 0):
            raise ValueError("must be a number of steps >= 0, or auto")
        return value


class SelfPlayConfig(_Section):
    """Turn-based games (PettingZoo AEC environments): the learner takes one seat, and the other
    seats are played by snapshots of the learner's own past policy."""

    snapshot_interval: int = Field(
        10, ge=1, description="Iterations (rollouts) between two snapshots of the policy joining the pool."
    )
    pool_size: int = Field(20, ge=1, le=10_000, description="Most snapshots kept (the oldest leave first).")
    latest_prob: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Probability that an episode's opponent is the latest snapshot; otherwise one drawn "
        "uniformly from the pool.",
    )
    random_prob: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Probability that an episode's opponent is a uniformly random legal player even when "
        "the pool has snapshots: half the games keep the learner punishing weak play, the other half "
        "against its snapshots keep it sound (measured on tic-tac-toe, Connect Four and ConnectThree-v0).",
    )
    seat: Literal["alternate", "first", "second"] = Field(
        "alternate",
        description="Which seat the learner takes: alternate (episode by episode, so it learns both), "
        "or always the first or second.",
    )


class TrainConfig(BaseModel):
    """All settings of one training run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    env: EnvConfig = Field(default_factory=EnvConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    selfplay: SelfPlayConfig = Field(default_factory=SelfPlayConfig)

    @model_validator(mode="after")
    def _check_processes(self) -> TrainConfig:
        n = self.run.processes
        if n > 1 and self.env.num_envs % n:
            raise ValueError(
                f"run.processes={n} must divide env.num_envs={self.env.num_envs} "
                "(each process steps an equal share of the copies)"
            )
        if n > 1 and self.minibatch_size % n:
            raise ValueError(
                f"run.processes={n} must divide the minibatch of {self.minibatch_size} samples "
                "(each process computes gradients on an equal share)"
            )
        length = self.ppo.sequence_length
        if self.policy.recurrent != "none" and self.ppo.n_steps % length:
            raise ValueError(
                f"ppo.sequence_length={length} must divide ppo.n_steps={self.ppo.n_steps} for a recurrent "
                f"policy (each copy's rollout is cut into sequences of {length} steps)"
            )
        return self

    @property
    def batch_size(self) -> int:
        """Samples in one rollout: ``env.num_envs * ppo.n_steps``."""
        return self.env.num_envs * self.ppo.n_steps

    @property
    def minibatch_size(self) -> int:
        """Samples per gradient step (never more than one rollout)."""
        return min(self.ppo.minibatch_size, self.batch_size)

    @property
    def num_minibatches(self) -> int:
        """Gradient steps per epoch; the last minibatch may be smaller."""
        return math.ceil(self.batch_size / self.minibatch_size)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return load_config(path)

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> TrainConfig:
        """A copy with dotted keys replaced (``{"ppo.gamma": 0.99}`` or ``["ppo.gamma=0.99"]``)."""
        return apply_overrides(self, overrides)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (``*name``): an alias repeats a node, so nested ones
    expand exponentially ("billion laughs"); a few kilobytes of file become gigabytes of lists.
    Settings never need them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not accepted in settings", event.start_mark
            )
        return super().compose_node(parent, index)


def read_yaml(text: str) -> Any:
    """Parse settings YAML (``--config``, presets, a run's ``config.yaml``, ``--set`` values):
    YAML's safe loader, refusing aliases, so that no file can make the loader do unbounded work.
    Raises ``yaml.YAMLError`` (and ``RecursionError`` for absurdly deep nesting)."""
    return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader: builds plain data only


def _parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` with YAML rules (1e-3, true, [64, 64])."""
    try:
        value = read_yaml(text)
    except (yaml.YAMLError, RecursionError):
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            return float(value)
        except ValueError:
            pass
    return value


def _deep_set(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            if i == 0 and part not in TrainConfig.model_fields:
                raise ConfigError(f"unknown setting '{dotted}': sections are env, policy, ppo, run")
            if part in node or (i == 1 and _is_scalar_field(parts[0], part)):
                raise ConfigError(f"unknown setting '{dotted}': '{part}' is not a section")
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _is_scalar_field(section: str, name: str) -> bool:
    """Whether ``section.name`` is a setting that holds no mapping (so no dotted key goes below it)."""
    model = TrainConfig.model_fields[section].annotation
    field = getattr(model, "model_fields", {}).get(name)
    return field is not None and "dict" not in str(field.annotation)


#: Defaults for policies that see images (a CNN), where they differ from the MLP's: larger
#: minibatches and a larger step (a CNN step costs what hundreds of MLP steps do), per encoder.
#: NatureCNN (images of 36 px and more): 4 epochs of 256, 32 gradient steps per 2,048 samples.
#: The small CNN (8-35 px): 10 epochs of 256, 80 steps: with 4, catch-the-ball at 16 px missed
#: half the rule's score within 150k steps in two seeds of three; with 10, every seed got it by
#: 32k. Chosen on a suite of pixel games (tests/pixel_suite.py, examples/pixel_defaults.py;
#: docs/masks-images.md). Applied by :func:`with_image_defaults` to the keys that were not set.
IMAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "nature": {"ppo.n_epochs": 4, "ppo.minibatch_size": 256, "ppo.learning_rate": 5e-4},
    "small": {"ppo.n_epochs": 10, "ppo.minibatch_size": 256, "ppo.learning_rate": 5e-4},
}


def explicitly_set(config: TrainConfig, dotted: str) -> bool:
    """Whether the setting ``dotted`` (``ppo.n_epochs``) was given (by a file, a preset, an
    override or an assignment) rather than left to its default."""
    section, name = dotted.split(".")
    return section in config.model_fields_set and name in getattr(config, section).model_fields_set


#: Settings that agent files and run directories written before the key existed meant, should
#: the key's default change. Stored settings are complete dumps, so a key missing there was
#: written before the key existed (``env.time_limit``: before it, a time limit was bootstrapped;
#: files written after it and before ``auto`` became the default name ``bootstrap`` themselves;
#: ``policy.box_coords``: before it, composite heads' Box parts were in the environment's units;
#: ``policy.box_distribution``: before it, every Box head was a Gaussian).
STORED_BEFORE: dict[str, Any] = {
    "env.time_limit": "bootstrap",
    "policy.box_coords": "env",
    "policy.box_distribution": "gaussian",
}


def as_stored_before(config: TrainConfig) -> TrainConfig:
    """Stored settings (an agent file's, a run's ``config.yaml``) as they were meant when
    written: :data:`STORED_BEFORE`'s value for each of its keys they do not name. (A user's
    settings file names what it changes; these are not for it.)"""
    missing = {key: value for key, value in STORED_BEFORE.items() if not explicitly_set(config, key)}
    return config.with_overrides(missing) if missing else config


def with_image_defaults(config: TrainConfig, encoder: str) -> tuple[TrainConfig, list[str]]:
    """``config`` with :data:`IMAGE_DEFAULTS` of ``encoder`` (``nature`` or ``small``: the
    largest CNN the policy has) in place of the keys it left to the defaults, and the keys
    replaced."""
    unset = {k: v for k, v in IMAGE_DEFAULTS[encoder].items() if not explicitly_set(config, k)}
    changed = [k for k, v in unset.items() if getattr(getattr(config, k.split(".")[0]), k.split(".")[1]) != v]
    return (config.with_overrides(unset) if unset else config), changed


def apply_overrides(config: TrainConfig, overrides: dict[str, Any] | list[str]) -> TrainConfig:
    """Return a validated copy of ``config`` with dotted-key overrides applied."""
    if isinstance(overrides, list):
        pairs: dict[str, Any] = {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
            pairs[key.strip()] = _parse_value(raw.strip())
        overrides = pairs
    # Only what was set (in a file, a preset, an override): the rest stays a default, so that
    # defaults that depend on the environment (IMAGE_DEFAULTS) still know what the user chose.
    data = config.model_dump(mode="python", exclude_unset=True)
    for key, value in overrides.items():
        if "." not in key:
            raise ConfigError(
                f"unknown setting '{key}': use section.field, sections are env, policy, ppo, run"
            )
        # env.kwargs.foo=1 sets one constructor argument
        _deep_set(data, key, value)
    return validate_config(data)


def validate_config(data: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig, turning a ValidationError into a one-line ConfigError."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, TrainConfig, data)) from None


#: Largest config file read (configs are a few hundred bytes).
MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str | Path) -> TrainConfig:
    """Load a YAML file into a TrainConfig (unknown keys are errors); errors name the file."""
    path = Path(path)
    name = quoted(path)
    try:
        if not path.is_file():
            what = "a directory" if path.is_dir() else "not a regular file"
            raise ConfigError(
                f"config file {name} is {what}" if path.exists() else f"config file not found: {name}"
            )
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {name} is larger than {MAX_CONFIG_BYTES:,} bytes; is it a config?"
            )
        data = read_yaml(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {name} is not text (expected YAML)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {name}: {exc.strerror}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{name}: not valid YAML ({brief(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping of sections (env, policy, ppo, run)")
    data.pop("preset", None)
    data.pop("description", None)
    try:
        return validate_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
