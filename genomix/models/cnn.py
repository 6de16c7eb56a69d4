"""CNN baseline: residual blocks of dilated 1-D convolutions (dilation doubling per block).

The classic architecture for DNA classifiers (Basset/DeepSEA-style feature detectors, with dilations
for a wider field of view). Its field of view grows with depth, not with the input: the contrast to
Paramixer's global mixing. Padded positions are zeroed before every convolution, so padding is
indistinguishable from the convolution's own zero padding and never changes a result.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from genomix.models.base import NeuralOptions, SequenceClassifier, at_least
from genomix.models.registry import register


class ConvBlock(nn.Module):
    """Pre-norm residual block: LayerNorm → dilated conv → GELU → pointwise conv."""

    def __init__(self, dim: int, hidden: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, hidden, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.out = nn.Conv1d(hidden, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        x = (self.norm(h) * mask[..., None]).transpose(1, 2)
        return h + self.dropout(self.out(nn.functional.gelu(self.conv(x))).transpose(1, 2))


@dataclass(frozen=True)
class CNNOptions(NeuralOptions):
    kernel: int = 9  # width of each dilated convolution

    def check(self, model: str) -> None:
        super().check(model)
        at_least(model, kernel=(self.kernel, 1))


@register("cnn")
class CNN(SequenceClassifier):
    """Dilated residual CNN classifier with the same embedding, pooling and head as Paramixer."""

    Options = CNNOptions

    def __init__(self, num_classes: int, max_len: int, options: CNNOptions) -> None:
        super().__init__(num_classes, max_len, options)
        self.blocks = nn.ModuleList(ConvBlock(options.dim, options.hidden, options.kernel, 2**i, options.dropout)
                                    for i in range(options.layers))

    def mix(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, mask) * mask[..., None]
        return x
