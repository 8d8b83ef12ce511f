"""The recurrent core: memory between the observation encoder and the trunks.

One core (an LSTM or GRU cell) is shared by actor and critic, as in CleanRL's
``ppo_atari_lstm.py``: one recurrent pass per step instead of two, and the critic's
gradient shapes the memory too (sb3-contrib's ``RecurrentPPO`` defaults to one per
network, which doubles the cost; a value that must predict the return depends on the
same hidden facts the policy does).

The state of a batch of copies is one tensor ``[batch, state_size]`` (for an LSTM the
hidden and cell states side by side). :class:`Memory` pairs it with ``starts``: which
copies begin an episode at their next step, where the state is reset to zero *before*
the step. The collector stores both at every step; a training sequence starts from the
stored state of its first step and resets wherever an episode starts inside it
(:meth:`RecurrentCore.sequence`, which equals running :meth:`RecurrentCore.step` one step at
a time, within float rounding: ``tests/unit/test_recurrent.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Memory:
    """The recurrent state of a batch of copies, and which of them start an episode next."""

    state: torch.Tensor  # [batch, state_size]
    starts: torch.Tensor  # [batch] bool: reset the state before the next step

    @classmethod
    def fresh(cls, batch: int, state_size: int, device: torch.device | str = "cpu") -> Memory:
        """Every copy at the start of an episode."""
        return cls(
            torch.zeros(batch, state_size, device=device), torch.ones(batch, dtype=torch.bool, device=device)
        )

    def select(self, index: torch.Tensor) -> Memory:
        return Memory(self.state[index], self.starts[index])


class RecurrentCore(nn.Module):
    """An ``nn.LSTMCell`` or ``nn.GRUCell`` stepped with episode resets."""

    def __init__(self, kind: str, in_features: int, hidden: int, ortho_init: bool = True):
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"policy.recurrent must be lstm, gru or none, not {kind!r}")
        self.kind, self.hidden = kind, hidden
        self.cell: nn.Module = (
            nn.LSTMCell(in_features, hidden) if kind == "lstm" else nn.GRUCell(in_features, hidden)
        )
        if ortho_init:  # as CleanRL: orthogonal weights (gain 1), zero biases
            for name, param in self.cell.named_parameters():
                if "weight" in name:
                    nn.init.orthogonal_(param, 1.0)
                else:
                    nn.init.zeros_(param)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden if self.kind == "lstm" else self.hidden

    def step(
        self, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``(output [batch, hidden], new state)``; the state of copies in ``starts``
        is reset to zero first."""
        state = state * (~starts).unsqueeze(-1).to(state.dtype)
        if self.kind == "lstm":
            h, c = self.cell(x, (state[:, : self.hidden], state[:, self.hidden :]))
            return h, torch.cat([h, c], -1)
        h = self.cell(x, state)
        return h, h

    def sequence(self, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """``x [batch, length, features]`` from ``state [batch, state_size]``, resetting where
        ``starts [batch, length]``: the outputs ``[batch, length, hidden]``.

        The same numbers as :meth:`step` repeated, computed faster: each sequence is cut into
        pieces at its episode starts, the pieces are padded to one length and run through
        torch's fused LSTM/GRU in one call (a piece that starts an episode from a zero state;
        a sequence's first piece otherwise from its stored state), and the outputs are put
        back in place. Stepping the cell in Python costs 7x more (forward and backward).
        """
        count, length, features = x.shape
        begins = starts.clone()
        begins[:, 0] = True
        flat = begins.reshape(-1)
        piece = torch.cumsum(flat.to(torch.int64), 0) - 1  # the piece each step belongs to
        first = flat.nonzero().squeeze(-1)  # each piece's first step
        position = torch.arange(count * length, device=x.device) - first[piece]
        pieces, longest = len(first), int(position.max()) + 1
        padded = x.new_zeros(pieces, longest, features)
        padded[piece, position] = x.reshape(-1, features)
        initial = x.new_zeros(pieces, self.state_size)
        carried = ~starts[:, 0]  # sequences that continue an episode from their stored state
        first_piece = piece[torch.arange(count, device=x.device) * length]
        initial[first_piece[carried]] = state[carried]
        out = self._fused(padded, initial)
        return out[piece, position].reshape(count, length, self.hidden)

    def _fused(self, x: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        """torch's multi-step LSTM/GRU (the functional form of ``nn.LSTM``/``nn.GRU``, batch
        first) with this cell's weights, from ``initial`` states."""
        cell = self.cell
        weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
        if self.kind == "lstm":
            h0 = initial[:, : self.hidden].unsqueeze(0).contiguous()
            c0 = initial[:, self.hidden :].unsqueeze(0).contiguous()
            return torch.lstm(x, (h0, c0), weights, True, 1, 0.0, self.training, False, True)[0]
        return torch.gru(
            x, initial.unsqueeze(0).contiguous(), weights, True, 1, 0.0, self.training, False, True
        )[0]


__all__ = ["Memory", "RecurrentCore"]
