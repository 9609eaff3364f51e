"""Convolution building blocks shared by SyncNet, the generator and the discriminator (Wav2Lip style)."""
from __future__ import annotations

from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Conv2d (ConvTranspose2d when ``transpose``) (+ BatchNorm unless ``norm`` is False) + ReLU (LeakyReLU with
    ``slope`` when ``leaky``); ``residual`` adds the input (same shape) before the activation, as in Wav2Lip.
    ``padding`` defaults to kernel // 2 (the size-keeping padding of odd kernels)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple = 3, stride: int | tuple = 1, residual: bool = False,
                 transpose: bool = False, leaky: bool = False, norm: bool = True, padding: int | tuple | None = None,
                 output_padding: int = 0, slope: float = 0.2):
        super().__init__()
        pad = kernel // 2 if padding is None else padding
        if transpose:
            conv = nn.ConvTranspose2d(cin, cout, kernel, stride, pad, output_padding)
        else:
            conv = nn.Conv2d(cin, cout, kernel, stride, pad)
        self.conv = nn.Sequential(conv, nn.BatchNorm2d(cout)) if norm else conv
        self.act = nn.LeakyReLU(slope) if leaky else nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.act(y + x if self.residual else y)


UP2 = {"kernel": 4, "stride": 2, "padding": 1, "transpose": True}  # ConvBlock options of an exact x2 upsampling


def down_stack(cin: int, widths: list[int], stride=2, residual: int = 1, leaky: bool = False,
               norm: bool = True) -> nn.Sequential:
    """Per width: a strided ConvBlock then ``residual`` residual ConvBlocks; each stage halves the map."""
    layers = []
    for w in widths:
        layers.append(ConvBlock(cin, w, stride=stride, leaky=leaky, norm=norm))
        layers += [ConvBlock(w, w, residual=True, leaky=leaky, norm=norm) for _ in range(residual)]
        cin = w
    return nn.Sequential(*layers)


def halvings(size: int, min_size: int = 3) -> int:
    """How many exact x2 downsamplings ``size`` allows while staying >= min_size (96 -> 5, 32 -> 3)."""
    n = 0
    while size % 2 == 0 and size // 2 >= min_size:
        size //= 2
        n += 1
    return n
