"""Reference 002: padded 3x3 convolutions, a squeeze-and-excitation block, GAP and Linear(16 -> 10).

Every layer of the reference is listed; with conv biases this is exactly its 10,550 parameters.
"""

import torch
from torch import nn

from mnist_budget.models.blocks import check_rates, conv_bn_relu


class SqueezeExcite(nn.Module):
    """Channel attention: GAP -> 1x1 conv (reduce) -> ReLU -> 1x1 conv (expand) -> sigmoid gate."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class Reference002Net(nn.Module):
    """28 -> pool 14 -> pool 7; 1x1 + 3x3 conv, conv, SE, conv; GAP; Linear."""

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        check_rates(dropout=dropout)
        self.features = nn.Sequential(
            conv_bn_relu(1, 8, padding=1),  # conv1, bn1
            conv_bn_relu(8, 12, padding=1),  # conv2, bn2
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(12, 16, padding=1),  # conv3, bn3
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(16, 16, 1),  # conv4_1x1
            conv_bn_relu(16, 16, padding=1),  # conv4_main, bn4
            conv_bn_relu(16, 16, padding=1),  # conv5, bn5
            SqueezeExcite(16, 8),
            conv_bn_relu(16, 16, padding=1),  # conv6, bn6
            nn.Dropout(dropout),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
