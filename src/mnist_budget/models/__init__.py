"""Plain ``nn.Module`` networks, free of Lightning, one file per family."""

from collections.abc import Mapping
from typing import Any

from torch import nn

from mnist_budget.errors import UserError, find_user_error, first_line


def build_network(net: Mapping[str, Any], name: str) -> nn.Module:
    """The network that a model config's ``net`` describes (Hydra's instantiate). The network's own
    refusal (a UserError, say a dropout rate of 1.2) comes out as it is; any other failure to build
    it as one line naming the model."""
    from hydra.utils import instantiate

    try:
        network = instantiate(net)
    except Exception as err:  # noqa: BLE001 - Hydra wraps the network's own error
        refusal = find_user_error(err)
        if refusal is not None:
            raise refusal from err
        reason = first_line(err.__cause__ or err).rstrip(".")
        raise UserError(f"model {name} cannot be built from model.net ({reason}): fix the model.* override") from err
    if not isinstance(network, nn.Module):
        raise UserError(
            f"model {name}: model.net built a {type(network).__name__}, not a network (torch.nn.Module): "
            "point model.net._target_ at a network class"
        )
    return network


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
