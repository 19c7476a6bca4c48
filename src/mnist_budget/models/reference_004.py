"""Reference 004: exactly the reference's torchsummary layer list, 15,440 parameters."""

import torch
from torch import nn

from mnist_budget.models.blocks import check_rates, conv_bn_relu


class Reference004Net(nn.Module):
    """28 -> pool 14 -> (1x1 squeeze) -> pool 7 -> conv to 40 -> GAP -> 1x1 conv to 10 logits."""

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        check_rates(dropout=dropout)
        self.features = nn.Sequential(
            conv_bn_relu(1, 10, padding=1),
            conv_bn_relu(10, 20, padding=1),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(20, 10, 1),
            conv_bn_relu(10, 20, padding=1),
            conv_bn_relu(20, 20, padding=1),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(20, 40, padding=1),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Conv2d(40, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten(1)
