"""Self-play in turn-based games: snapshots of the policy as opponents (the algorithm's side of
:mod:`ppo_envkit.environments.turns`).

Every ``selfplay.snapshot_interval`` iterations the current policy joins the opponent pool of
every training copy. A snapshot travels as **data** (an environment change ``["call",
"add_snapshot", [SNAPSHOT_FACTORY, payload, name]]``): the trainer records it like any
``env_call``, gives it to every copy in every vectorization and every rank, and replays it on
exact resume, so a resumed run meets the same opponents as an unbroken one. The copies keep
the newest ``selfplay.pool_size``. Each snapshot is stored once, in the run's list of
environment changes (the actor's weights and observation statistics only, float32, base64:
about 32 KB for a 64x64 tic-tac-toe policy).

A :class:`SnapshotPlayer` acts with numpy on one observation (a game's opponent moves one at a
time inside ``env.step``: a numpy forward costs microseconds where a torch call costs tens).
During training it **samples** from its masked distribution (a deterministic snapshot plays
the same game every time from a given position, so the learner would overfit a few lines and
its wins would not generalise); evaluation against the pool samples too, and the agent under
evaluation acts deterministically, as every evaluation does.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import ConfigError
from ..spaces import ObsFlattener, space_from_data, space_to_data
from .heads import CategoricalHead
from .policy import ActorCritic

#: The ``module:function`` that builds a snapshot player from its payload (inside each copy).
SNAPSHOT_FACTORY = "ppo_envkit.algo.selfplay:SnapshotPlayer"
#: The environment change that adds a snapshot to the copies' pools.
ADD_SNAPSHOT = "add_snapshot"


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str, shape: list[int]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(shape).astype(np.float32)


def supported(policy: ActorCritic) -> str | None:
    """Why ``policy`` cannot be a snapshot player (None: it can)."""
    if policy.encoder is not None or policy.core is not None:
        return "self-play snapshots need a feed-forward MLP policy (no image encoder, no memory)"
    if not isinstance(policy.head, CategoricalHead):
        return "self-play snapshots need a Discrete action space (a categorical head)"
    return None


def snapshot_payload(policy: ActorCritic) -> dict[str, Any]:
    """The actor of ``policy`` as JSON-ready data (:class:`SnapshotPlayer` reads it back)."""
    reason = supported(policy)
    if reason is not None:
        raise ConfigError(reason)
    layers = []
    linears = [m for m in policy.actor_trunk if isinstance(m, torch.nn.Linear)] + [policy.head.out]
    for linear in linears:
        w = linear.weight.detach().cpu().numpy()
        layers.append(
            {"w": _encode(w), "shape": list(w.shape), "b": _encode(linear.bias.detach().cpu().numpy())}
        )
    norm = policy.obs_norm
    dim = policy.flattener.flat_dim
    return {
        "format": 1,
        "observation_space": space_to_data(policy.observation_space),
        "activation": policy_activation(policy),
        "layers": layers,
        "normalize": bool(norm.enabled),
        "shift": _encode(norm._shift.detach().cpu().numpy()),
        "scale": _encode(norm._scale.detach().cpu().numpy()),
        "norm_mask": [bool(v) for v in norm.mask.cpu().numpy()],
        "clip": float(norm.clip),
        "dim": dim,
        "start": int(policy.head.start) if hasattr(policy.head, "start") else 0,
    }


def policy_activation(policy: ActorCritic) -> str:
    for module in policy.actor_trunk:
        name = type(module).__name__
        if not isinstance(module, torch.nn.Linear):
            return {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu", "GELU": "gelu", "SiLU": "silu"}.get(
                name, "leaky_relu" if name == "LeakyReLU" else name
            )
    return "tanh"


def _activate(x: np.ndarray, name: str) -> np.ndarray:
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, 0.01 * x)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "gelu":
        return np.asarray(torch.nn.functional.gelu(torch.from_numpy(x)))
    raise ValueError(f"unknown activation {name!r}")


class SnapshotPlayer:
    """A frozen copy of a policy's actor that plays one observation at a time (numpy).

    ``player(observation, action_mask, rng) -> action``: samples from the masked distribution
    with ``rng`` (or takes the most likely legal action when ``deterministic``)."""

    def __init__(self, payload: dict[str, Any], deterministic: bool = False):
        self.deterministic = deterministic
        self.flattener = ObsFlattener(space_from_data(payload["observation_space"]))
        self.activation = payload["activation"]
        self.layers = [
            (_decode(x["w"], x["shape"]), _decode(x["b"], [x["shape"][0]])) for x in payload["layers"]
        ]
        dim = int(payload["dim"])
        self.normalize = bool(payload["normalize"])
        self.shift = _decode(payload["shift"], [dim])
        self.scale = _decode(payload["scale"], [dim])
        self.norm_mask = np.asarray(payload["norm_mask"], dtype=bool)
        self.clip = float(payload["clip"])
        self.start = int(payload.get("start", 0))

    def logits(self, observation: Any, mask: np.ndarray | None = None) -> np.ndarray:
        x = self.flattener(observation, batched=False)[0]
        if self.normalize:
            y = (x - self.shift) * self.scale
            x = np.where(self.norm_mask, np.clip(y, -self.clip, self.clip), y).astype(np.float32)
        for k, (w, b) in enumerate(self.layers):
            x = w @ x + b
            if k < len(self.layers) - 1:
                x = _activate(x, self.activation)
        if mask is not None:
            x = np.where(mask, x, -np.inf)
        return x

    def __call__(self, observation: Any, mask: np.ndarray | None, rng: np.random.Generator) -> int:
        logits = self.logits(observation, mask)
        if self.deterministic:
            return int(np.argmax(logits)) + self.start
        p = np.exp(logits - logits.max())
        cdf = np.cumsum(p)
        return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1)) + self.start


# --------------------------------------------------------------------------- trainer hooks


def configure_copies(envs: Any, config: TrainConfig, policy: ActorCritic) -> bool:
    """Give turn-based copies the ``selfplay`` settings (each time they are built: the settings
    cannot change during a run, so a rebuilt copy is configured as before). Returns whether the
    environment is turn-based."""
    if not dict(getattr(envs, "metadata", {}) or {}).get("turn_based"):
        return False
    reason = supported(policy)
    if reason is not None:
        raise ConfigError(f"environment {config.env.id} is a turn-based game: {reason}")
    sp = config.selfplay
    envs.call("configure_selfplay", sp.seat, sp.pool_size, sp.latest_prob, sp.random_prob)
    return True


def snapshot_change(policy: ActorCritic, iteration: int) -> tuple[str, str, list[Any]]:
    """The environment change that adds ``policy`` as it is now to the pool."""
    return "call", ADD_SNAPSHOT, [SNAPSHOT_FACTORY, snapshot_payload(policy), f"iteration {iteration}"]


def pool_payloads(changes: list[Any], pool_size: int) -> list[tuple[str, dict[str, Any]]]:
    """``(name, payload)`` of the snapshots in the pool after ``changes`` (a run's environment
    changes), oldest first."""
    added = [(c[2][2], c[2][1]) for c in changes if c[0] == "call" and c[1] == ADD_SNAPSHOT]
    return added[-pool_size:] if pool_size > 0 else []


class SelfPlayMonitor:
    """Rank 0's view of self-play while training: the win rate against a random legal player at
    each evaluation, and a rating of each snapshot when it joins the pool (``openskill``'s
    Plackett-Luce model, when installed: the ``pettingzoo`` extra). A new snapshot plays
    ``RATING_GAMES`` games from each seat against the random player and each snapshot already
    in the pool, whose ratings (set when they joined) stay fixed, as does the random player's
    (the default rating): the anchor that makes the ratings of a run comparable over time.
    Its ratings are saved with checkpoints (:meth:`state_dict`), so a resumed run logs what an
    unbroken one does."""

    RATING_GAMES = 10

    def __init__(self) -> None:
        #: name -> (mu, sigma)
        self.ratings: dict[str, tuple[float, float]] = {}
        self.pool: list[tuple[str, dict[str, Any]]] = []

    def evaluation_metrics(self, policy: ActorCritic, config: TrainConfig, games: int) -> dict[str, float]:
        """``eval_win_rate`` (both seats), and per seat, against a random legal player."""
        from .games import play_games, random_opponent

        result = play_games(
            policy, config.env, random_opponent(config.env), games, seed=config.run.seed, name="random"
        )
        first, second = result.seats["first"].rates(), result.seats["second"].rates()
        return {
            "eval_win_rate": result.total.rates()["win_rate"],
            "eval_win_rate_first": first["win_rate"],
            "eval_win_rate_second": second["win_rate"],
            "eval_illegal_moves": float(result.total.illegal_moves),
        }

    def snapshot_metrics(
        self, payload: dict[str, Any], name: str, config: TrainConfig, seed: int
    ) -> dict[str, float]:
        """Rate the snapshot ``name`` as it joins the pool; returns ``selfplay_rating`` (its
        ordinal, mu - 3 sigma) and the pool's size, or only the size without openskill."""
        sp = config.selfplay
        metrics: dict[str, float] = {}
        try:
            from openskill.models import PlackettLuce
        except ImportError:
            PlackettLuce = None
        if PlackettLuce is not None:
            from .games import play_games, random_opponent

            model = PlackettLuce()
            player = SnapshotPlayer(payload)
            me = model.rating()
            rivals = [("random", random_opponent(config.env))]
            rivals += [(n, SnapshotPlayer(p)) for n, p in self.pool]
            for rival_name, rival in rivals:
                mu, sigma = self.ratings.get(rival_name, (model.mu, model.sigma))
                fixed = model.rating(mu=mu, sigma=sigma)
                result = play_games(None, config.env, rival, self.RATING_GAMES, seed=seed, agent=player)
                for record in result.seats.values():
                    for outcome, ranks in (("win", [0, 1]), ("draw", [0, 0]), ("loss", [1, 0])):
                        for _ in range(getattr(record, outcome)):
                            [[me], _] = model.rate([[me], [fixed]], ranks=ranks)
            self.ratings[name] = (float(me.mu), float(me.sigma))
            metrics["selfplay_rating"] = float(me.ordinal())
        self.pool = ([*self.pool, (name, payload)])[-sp.pool_size :]
        metrics["selfplay_pool_size"] = float(len(self.pool))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready: the ratings and the pool's names (the payloads are in the run's changes)."""
        return {"ratings": {k: list(v) for k, v in self.ratings.items()}, "pool": [n for n, _ in self.pool]}

    def load_state_dict(self, state: dict[str, Any], changes: list[Any], pool_size: int) -> None:
        self.ratings = {k: (float(v[0]), float(v[1])) for k, v in state.get("ratings", {}).items()}
        self.pool = pool_payloads(changes, pool_size)


__all__ = [
    "ADD_SNAPSHOT",
    "SNAPSHOT_FACTORY",
    "SelfPlayMonitor",
    "SnapshotPlayer",
    "configure_copies",
    "pool_payloads",
    "snapshot_change",
    "snapshot_payload",
    "supported",
]
