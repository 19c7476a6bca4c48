"""Plain ``nn.Module`` networks, free of Lightning, one file per family."""

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from mnist_budget.errors import UserError, find_user_error, first_line


def build_network(net: Mapping[str, Any], name: str) -> nn.Module:
    """The network that a model config's ``net`` describes (Hydra's instantiate). The network's own
    refusal (a UserError, say a dropout rate of 1.2) comes out as it is; any other failure to build
    it as one line naming the model."""
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


def check_network(net_config: Mapping[str, Any], name: str, budget: int) -> nn.Module:
    """Build a model config's network and run it on two images: a bad argument, a network over its
    ``budget`` or one that cannot process a 28x28 digit is refused now, not in the first training step."""
    fix = "fix the model.* override"
    net = build_network(net_config, name)
    check_budget(net, budget, name)
    try:
        with torch.no_grad():
            logits = net.eval()(torch.zeros(2, 1, 28, 28))
    except Exception as err:  # noqa: BLE001 - any failure of a user's network on a batch is reported in one line
        refusal = find_user_error(err) or UserError(
            f"model {name} fails on a batch of 28x28 images ({first_line(err.__cause__ or err).rstrip('.')}): {fix}"
        )
        raise refusal from err
    if tuple(logits.shape) != (2, 10):
        raise UserError(f"model {name} returns shape {tuple(logits.shape)} for 2 images, not (2, 10): {fix}")
    return net
