"""Seed 004: exactly the reference's torchsummary layer list, 15,440 parameters."""

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]


class Seed004Net(nn.Module):
    """28 -> pool 14 -> (1x1 squeeze) -> pool 7 -> conv to 40 -> GAP -> 1x1 conv to 10 logits."""

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(1, 10),
            *conv_bn_relu(10, 20),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(20, 10, 1),
            *conv_bn_relu(10, 20),
            *conv_bn_relu(20, 20),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            *conv_bn_relu(20, 40),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Conv2d(40, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten(1)
