"""Reference 000's < 20k-parameter CNN: five unpadded 3x3 convolutions, global average pooling."""

import torch
from torch import nn

from mnist_budget.models.blocks import check_rates, conv_bn_relu


class GapCNN(nn.Module):
    """28x28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4 -> 2 -> GAP -> Linear(32 -> 10).

    With the default widths this is 17,994 parameters.
    """

    def __init__(self, dropout: float = 0.05, num_classes: int = 10) -> None:
        super().__init__()
        check_rates(dropout=dropout)
        self.features = nn.Sequential(
            conv_bn_relu(1, 8),
            conv_bn_relu(8, 16),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(16, 16),
            conv_bn_relu(16, 32),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(32, 32),
            nn.Dropout(dropout),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (batch, num_classes)."""
        return self.classifier(self.pool(self.features(x)).flatten(1))
