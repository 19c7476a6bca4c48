"""Reference 003 (published as "SimpleMNISTNet"): under 8k parameters, residual 3x3 blocks, no fully connected layer.

The reference names its parts (convs 1 -> 8 -> 12 -> 16 with BN and ReLU, MaxPool and AvgPool,
skip connections, dropout, a final 1x1 conv) but not their arrangement; this is the closest
faithful reading: 7,578 parameters.
"""

import torch
from torch import nn

from mnist_budget.models.blocks import check_rates, conv_bn_relu


class Residual(nn.Module):
    """x + block(x): a skip connection around a shape-preserving block."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Reference003Net(nn.Module):
    """28 -> pool 14 -> pool 7 -> AvgPool(7) -> 1x1 conv to 10 logits."""

    def __init__(self, dropout: float = 0.05) -> None:
        super().__init__()
        check_rates(dropout=dropout)
        self.features = nn.Sequential(
            conv_bn_relu(1, 8, padding=1, bias=False),
            conv_bn_relu(8, 12, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(12, 16, padding=1, bias=False),
            Residual(conv_bn_relu(16, 16, padding=1, bias=False)),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            Residual(conv_bn_relu(16, 16, padding=1, bias=False)),
            nn.AvgPool2d(7),
        )
        self.head = nn.Conv2d(16, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten(1)
