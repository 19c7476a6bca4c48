"""Plain ``nn.Module`` networks, free of Lightning, one file per family."""

from torch import nn


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters: the figure every budget is measured in."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
