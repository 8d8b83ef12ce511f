"""Observation encoders: convolutional networks for the image parts of an observation.

The policy sees one flat float32 row per observation (:class:`~ppo_envkit.spaces.ObsFlattener`).
When the observation holds images (a ``uint8`` Box, or image entries of a ``Dict``),
:class:`ImageEncoder` cuts each image's columns out of that row, puts them back into
``[batch, channels, height, width]`` (from channel-last or channel-first, so both
layouts give the same network), scales them to [0, 1] and passes them through a CNN;
the other columns (normalized as usual) pass through unchanged. The result feeds the
MLP trunks. One encoder serves actor and critic (as Stable-Baselines3's CNN policies
share their feature extractor): images dominate the cost, and the value gradient helps
the convolutions learn.

Speed: the images enter the CNN in channels-last memory order (oneDNN's fast layout on the
CPU, 1.7-1.9x faster convolutions here than channel-first) and, during training only,
the CNN may run under bfloat16 autocast (``policy.cnn_precision``; weights, gradients,
Adam and everything after the CNN stay float32): on CPUs with native bfloat16 (AMX,
AVX512-BF16) another 1.9x. Evaluation, ``predict`` and the ONNX export stay float32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PolicyConfig
from ..spaces import ImageLayout, ObsFlattener
from .heads import init_layer

#: Images at least this many pixels on their shorter side get NatureCNN under ``auto``
#: (its 8x8 stride-4, 4x4 stride-2 and 3x3 convolutions need 36).
NATURE_MIN_SIDE = 36


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int, ortho: bool) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
    if ortho:
        nn.init.orthogonal_(conv.weight, math.sqrt(2))
        nn.init.zeros_(conv.bias)
    return conv


def cnn(kind: str, channels: int, height: int, width: int, features: int, ortho: bool) -> nn.Sequential:
    """``nature``: Mnih et al. (2015)'s three convolutions; ``small``: three 3x3 convolutions
    (the last two of stride 2) for images of 8-35 pixels. Both end in a linear layer of
    ``features`` units with ReLU."""
    if kind == "nature":
        convs = [
            _conv(channels, 32, 8, 4, 0, ortho),
            _conv(32, 64, 4, 2, 0, ortho),
            _conv(64, 64, 3, 1, 0, ortho),
        ]
    else:
        convs = [
            _conv(channels, 16, 3, 1, 1, ortho),
            _conv(16, 32, 3, 2, 1, ortho),
            _conv(32, 32, 3, 2, 1, ortho),
        ]
    layers: list[nn.Module] = []
    for conv in convs:
        layers += [conv, nn.ReLU()]
    layers.append(nn.Flatten())
    with torch.no_grad():
        flat = nn.Sequential(*layers)(torch.zeros(1, channels, height, width)).shape[1]
    return nn.Sequential(*layers, init_layer(nn.Linear(flat, features), math.sqrt(2), ortho), nn.ReLU())


def _conv_out(side: int, kind: str) -> int:
    if kind == "nature":
        return ((side - 8) // 4 + 1 - 4) // 2 + 1 - 2
    return ((side - 1) // 2) // 2 + 1


def cnn_parameters(kind: str, channels: int, height: int, width: int, features: int) -> int:
    """Parameters of :func:`cnn` (computed, for the size guard, before anything is built)."""
    widths = [(32, 8), (64, 4), (64, 3)] if kind == "nature" else [(16, 3), (32, 3), (32, 3)]
    total, cin = 0, channels
    for cout, kernel in widths:
        total += cin * cout * kernel * kernel + cout
        cin = cout
    flat = cin * max(0, _conv_out(height, kind)) * max(0, _conv_out(width, kind))
    return total + flat * features + features


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions natively (else they are emulated, slower
    than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def encoder_kind(setting: str, layout: ImageLayout) -> str:
    """The CNN that ``policy.image_encoder`` gives images of ``layout``."""
    if setting != "auto":
        return setting
    _, height, width = layout.chw
    return "nature" if min(height, width) >= NATURE_MIN_SIDE else "small"


def _scaled(net: nn.Sequential, pixels: torch.Tensor) -> torch.Tensor:
    """``net(pixels / 255)`` in float32, with the scaling folded into the first convolution's
    weights (``conv(x / 255) = conv_{w / 255}(x)``): one pass fewer over the pixels."""
    first = net[0]
    assert isinstance(first, nn.Conv2d)
    x = F.conv2d(pixels, first.weight / 255.0, first.bias, first.stride, first.padding)
    for layer in list(net)[1:]:
        x = layer(x)
    return x.float()


class ImageEncoder(nn.Module):
    """Flat observation rows -> CNN features of each image part + the other columns."""

    def __init__(self, flattener: ObsFlattener, policy: PolicyConfig):
        super().__init__()
        images = flattener.images()
        self.layouts = [layout for _, layout in images]
        self.starts = [start for start, _ in images]
        self.cnns = nn.ModuleList(
            cnn(
                encoder_kind(policy.image_encoder, layout),
                *layout.chw,
                policy.cnn_features,
                policy.ortho_init,
            )
            for layout in self.layouts
        )
        self.precision = policy.cnn_precision
        self._autocast: torch.dtype | None = None  # set by training_precision()
        keep = torch.ones(flattener.flat_dim, dtype=torch.bool)
        for start, layout in images:
            keep[start : start + math.prod(layout.shape)] = False
        self.register_buffer("other_columns", keep.nonzero().squeeze(-1), persistent=False)
        self.out_features = len(images) * policy.cnn_features + int(keep.sum())

    @staticmethod
    def to_chw(flat: torch.Tensor, layout: ImageLayout, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``[batch, H*W*C...]`` pixel columns (float or uint8) -> ``[batch, channels, H, W]``
        pixel values 0..255 as ``dtype`` (default float32): channels-last in memory where that is
        free ((H, W, C) images) or pays (float32 convolutions: 1.7x faster here; the reorder is
        done on the narrowest type), else channel-first (bfloat16 convolutions run alike in both)."""
        batch = flat.shape[0]
        channels, height, width = layout.chw
        dtype = dtype or torch.float32
        image = flat.reshape(batch, *layout.shape)
        if layout.channels_last and len(layout.shape) - layout.stacked == 3:
            image = image.movedim(-1, -3)  # (..., H, W, C) -> (..., C, H, W)
        image = image.reshape(batch, channels, height, width)
        if dtype == torch.float32 and channels > 1:
            image = image.contiguous(memory_format=torch.channels_last)
        return image.to(dtype)  # (the memory order is kept)

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The dtype training runs the CNN in on ``device`` (None: float32): bfloat16 when
        ``policy.cnn_precision`` says so, or under ``auto`` where the device has native
        bfloat16 (CPUs with AMX or AVX512-BF16, CUDA GPUs of compute capability 8 and up)."""
        if self.precision == "float32":
            return None
        if self.precision == "auto" and not native_bfloat16(device):
            return None
        return torch.bfloat16

    @contextlib.contextmanager
    def training_precision(self, device: torch.device) -> Iterator[None]:
        """Within this block the CNN runs in the training dtype (:meth:`autocast_dtype`)."""
        previous, self._autocast = self._autocast, self.autocast_dtype(device)
        try:
            yield
        finally:
            self._autocast = previous

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        """Flat rows (float32, or uint8 when the observation is one image: the rollout's
        minibatches) -> features."""
        dtype = self._autocast
        with torch.autocast(flat.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            parts = [
                _scaled(net, self.to_chw(flat[:, start : start + math.prod(layout.shape)], layout, dtype))
                for net, start, layout in zip(self.cnns, self.starts, self.layouts, strict=True)
            ]
        if self.other_columns.numel():
            parts.append(flat.index_select(1, self.other_columns).to(torch.float32))
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


__all__ = ["NATURE_MIN_SIDE", "ImageEncoder", "cnn", "cnn_parameters", "encoder_kind", "native_bfloat16"]
