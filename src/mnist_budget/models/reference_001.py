"""Reference 001: input block, two pooled conv stages, fully convolutional output, then GAP.

The reference lists its blocks but not every kernel size or bias; this reading (3x3 convs
without bias, a 1x1 last conv) gives 18,932 parameters against the reported 18,752.
"""

import torch
from torch import nn

from mnist_budget.models.blocks import check_rates, conv_bn_relu


def conv_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Unpadded 3x3 conv (no bias: BatchNorm follows) -> BN -> ReLU -> dropout."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels, bias=False), nn.Dropout(dropout))


class Reference001Net(nn.Module):
    """28 -> 26 -> 24 -> 22 -> pool 11 -> 9 -> 7 -> pool 3 -> 1 -> (1x1) -> GAP; dropout rising."""

    def __init__(self, dropout_start: float = 0.05, dropout_end: float = 0.1) -> None:
        super().__init__()
        check_rates(dropout_start=dropout_start, dropout_end=dropout_end)
        low, high = dropout_start, dropout_end
        self.features = nn.Sequential(
            conv_block(1, 12, low),  # input block
            conv_block(12, 16, low),
            conv_block(16, 20, low),
            nn.MaxPool2d(2),
            conv_block(20, 24, high),  # transition
            conv_block(24, 24, high),
            nn.MaxPool2d(2),
            nn.Conv2d(24, 20, 3, bias=False),  # output block: no BN/ReLU before the logits
            nn.Conv2d(20, 10, 1, bias=False),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
