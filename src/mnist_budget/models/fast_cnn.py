"""The default network: pools after the first convolution, so that most work runs at low resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnist_budget.models.blocks import conv_bn_relu


class FastCNN(nn.Module):
    """28 -conv-> 26 -pool-> 13 -conv-> 11 -conv-> 9 -pool-> 4 -conv(pad 1)-> 4 -> GAP -> Linear.

    Why this shape: on a CPU a small network's step time goes mostly to per-element work
    (BatchNorm, ReLU, pooling, dropout) on the large early feature maps, not to the convolutions'
    multiply-adds. Pooling right after one narrow convolution shrinks every later map 4x; the
    parameters sit at 11x11 and below, where they are cheap. Receptive field: 22 px, about a
    digit's 20 px box. Convolutions carry no bias (BatchNorm follows each), and dropout acts only
    on the pooled 4x4 maps, where it costs nothing.
    With ``channels=(8, 16, 32, 40)`` (conf/model/fast_cnn.yaml): 17,954 parameters, 0.75 M
    multiply-adds per image (gap_cnn: 1.27 M), and about half of gap_cnn's step time on CPU.
    """

    def __init__(self, channels: Sequence[int] = (8, 16, 32, 40), dropout: float = 0.02, num_classes: int = 10) -> None:
        super().__init__()
        c1, c2, c3, *tail = channels
        layers: list[nn.Module] = [
            conv_bn_relu(1, c1, bias=False),
            nn.MaxPool2d(2),
            conv_bn_relu(c1, c2, bias=False),
            conv_bn_relu(c2, c3, bias=False),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
        ]
        width = c3
        for out in tail:  # 4x4 stage: padded 3x3 convolutions
            layers.append(conv_bn_relu(width, out, padding=1, bias=False))
            width = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (batch, num_classes)."""
        return self.classifier(self.pool(self.features(x)).flatten(1))
