"""Convolutional encoder and decoder stacks for images of any size, in the DCGAN/DFC-VAE style.

Geometry, derived from the image size alone (`ConvGeometry`):

* the number of stride-2 stages is `min(len(channels), ceil(log2(max(H, W))) - 1)`, so the
  smallest feature map is at least 2x2: 4 for 64x64 (64 -> 4), 4 for 32x32 and 28x28 (-> 2),
  2 for 8x8 digits (-> 2);
* H and W are zero-padded up to a multiple of 2**stages (28x28 -> 32x32, symmetric padding), the
  decoder works at the padded size and its output is cropped back. Padding rather than ceil
  arithmetic keeps every stage an exact factor of two, so encoder and decoder mirror each other
  and the nearest-neighbour upsampling lands on the original grid; zero padding matches the black
  border of MNIST-style images. Likelihoods see only the cropped image, so nats per image stay
  comparable with the MLP models;
* stages beyond the stride-2 ones (small images) are stride-1 3x3 convolutions that run first in
  the encoder and last in the decoder, so every image size gets the same number of layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2  # the DCGAN/DFC-VAE slope


@dataclass(frozen=True)
class ConvGeometry:
    """Sizes of a conv stack for (C, H, W) images and the given per-stage channels."""

    shape: tuple[int, int, int]
    channels: tuple[int, ...]

    @property
    def stages(self) -> int:
        """Number of stride-2 (down/up-sampling) stages."""
        side = max(self.shape[1:])
        return max(0, min(len(self.channels), math.ceil(math.log2(side)) - 1))

    @property
    def padded(self) -> tuple[int, int]:
        step = 2**self.stages
        return tuple(-(-s // step) * step for s in self.shape[1:])  # type: ignore[return-value]

    @property
    def bottom(self) -> tuple[int, int]:
        """(h, w) of the smallest feature map."""
        return tuple(s // 2**self.stages for s in self.padded)  # type: ignore[return-value]

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding, as F.pad takes it."""
        (h, w), (ph, pw) = self.shape[1:], self.padded
        return ((pw - w) // 2, pw - w - (pw - w) // 2, (ph - h) // 2, ph - h - (ph - h) // 2)


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.LeakyReLU(LEAKY_SLOPE)]


@dataclass(frozen=True)
class ConvStyle:
    """How each stage of an encoder is built: a stride-2 conv of `kernel` x `kernel` (padding
    (kernel - 1) // 2, so an even side halves exactly), optionally BatchNorm, an activation."""

    kernel: int
    batch_norm: bool
    activation: Callable[[], nn.Module]


DCGAN = ConvStyle(kernel=4, batch_norm=True, activation=lambda: nn.LeakyReLU(LEAKY_SLOPE))
CAAE = ConvStyle(kernel=5, batch_norm=False, activation=nn.ReLU)  # Zhang et al. 2017


def label_maps(condition: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Condition vectors (B, K) as K constant feature maps (B, K, h, w) of the given (h, w)."""
    return condition[:, :, None, None].expand(-1, -1, *size)


class ConvEncoder(nn.Module):
    """Images (B, C, H, W) -> flat features, per stage a conv (stride 2 in the style's kernel, or
    3x3 stride 1 on small images), [BatchNorm,] activation. With `code_dim`, a linear layer and a
    tanh turn the features into codes in [-1, 1]^code_dim (the CAAE's encoder). With
    `condition_dim` K, forward takes a condition vector (B, K) too, which enters as K constant
    input channels beside the (padded) image, so the first conv already sees the label."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        channels: Sequence[int],
        style: ConvStyle = DCGAN,
        code_dim: int | None = None,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.geometry = ConvGeometry(tuple(shape), tuple(channels))  # type: ignore[arg-type]
        self.condition_dim = condition_dim
        flat_stages = len(channels) - self.geometry.stages
        layers: list[nn.Module] = []
        width = shape[0] + condition_dim
        for i, out in enumerate(channels):
            if i < flat_stages:
                layers.append(nn.Conv2d(width, out, 3, stride=1, padding=1))
            else:
                kernel = style.kernel
                layers.append(nn.Conv2d(width, out, kernel, stride=2, padding=(kernel - 1) // 2))
            if style.batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(style.activation())
            width = out
        self.convs = nn.Sequential(*layers)
        h, w = self.geometry.bottom
        self.out_features = width * h * w
        self.fc = nn.Linear(self.out_features, code_dim) if code_dim is not None else None

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        _check_condition(self.condition_dim, condition)
        pad = self.geometry.padding
        if any(pad):
            x = F.pad(x, pad)
        if condition is not None:
            # After the padding: the label is constant over everything the first conv reads.
            x = torch.cat([x, label_maps(condition.to(x.dtype), x.shape[2:])], dim=1)
        features = self.convs(x).flatten(1)
        return features if self.fc is None else torch.tanh(self.fc(features))


class ConvDecoder(nn.Module):
    """Codes (B, D) -> images (B, C, H, W) of raw outputs: linear to (channels[-1], h, w), then
    per stage nearest upsampling x2, 3x3 conv, BatchNorm, LeakyReLU, and a final 3x3 conv to C
    channels (after the last upsampling) without normalisation or activation. With
    `condition_dim` K, forward takes a condition vector (B, K) too, concatenated to the code
    before the linear layer (as the MLP CVAE's decoder takes it)."""

    def __init__(
        self,
        in_features: int,
        shape: tuple[int, int, int],
        channels: Sequence[int],
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.geometry = ConvGeometry(tuple(shape), tuple(channels))  # type: ignore[arg-type]
        self.shape = tuple(shape)
        self.condition_dim = condition_dim
        h, w = self.geometry.bottom
        top = channels[-1]
        self.bottom_shape = (top, h, w)
        self.project = nn.Linear(in_features + condition_dim, top * h * w)
        # Widths after each stage: the encoder's in reverse, ending with the image channels.
        widths = [*reversed(channels[:-1]), shape[0]]
        layers: list[nn.Module] = []
        width = top
        for i, out in enumerate(widths):
            if i < self.geometry.stages:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers.append(nn.Conv2d(width, out, 3, stride=1, padding=1))
            if i < len(widths) - 1:
                layers += _norm_act(out)
            width = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        _check_condition(self.condition_dim, condition)
        if condition is not None:
            z = torch.cat([z, condition.to(z.dtype)], dim=1)
        # The projection is followed by the same BatchNorm-free LeakyReLU the stages use.
        x = F.leaky_relu(self.project(z), LEAKY_SLOPE).view(len(z), *self.bottom_shape)
        out = self.net(x)
        left, _, top, _ = self.geometry.padding
        _, h, w = self.shape
        return out[:, :, top : top + h, left : left + w]


def _check_condition(condition_dim: int, condition: torch.Tensor | None) -> None:
    """A conditional network needs its (B, condition_dim) condition, an unconditional one none:
    a silently ignored or missing label would only show as wrong samples."""
    if condition_dim and (condition is None or condition.shape[-1] != condition_dim):
        got = "none" if condition is None else f"width {condition.shape[-1]}"
        raise ValueError(f"expected a condition vector of width {condition_dim}, got {got}")
    if not condition_dim and condition is not None:
        raise ValueError("this network is unconditional, but was given a condition vector")
