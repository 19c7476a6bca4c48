"""Plain ``nn.Module`` networks, free of Lightning, one file per family."""

from torch import nn

from mnist_budget.errors import UserError


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters: the figure every budget is measured in."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def check_budget(net: nn.Module, budget: int, name: str) -> int:
    """The network's trainable parameters; a network over its ``model.budget`` is refused."""
    params = count_parameters(net)
    if params > budget:
        raise UserError(
            f"model {name} has {params:,} trainable parameters, over its budget of {budget:,}: "
            "shrink the model or raise model.budget"
        )
    return params
