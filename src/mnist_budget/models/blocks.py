"""Building blocks shared by the model families, and the check of their dropout rates."""

from torch import nn

from mnist_budget.errors import UserError


def check_rates(**rates: float) -> None:
    """Each dropout rate (a ``model.net`` argument, by name) must be a number in [0, 1)."""
    for key, value in rates.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise UserError(f"model.net.{key}={value!r} is invalid: it must be in [0, 1)")


def conv_bn_relu(
    in_channels: int, out_channels: int, *, padding: int = 0, bias: bool = True, kernel_size: int = 3, stride: int = 1
) -> nn.Sequential:
    """Convolution (3x3 unless told) -> BatchNorm -> ReLU: the unit every network here is made of.

    ``bias`` is kept where a reference counts conv biases in its parameter total, though
    BatchNorm makes them redundant.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding, bias=bias),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_pool_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution -> 2x2 max-pool -> BatchNorm -> ReLU: ``conv_bn_relu`` then a pool, with the
    pool moved forward, so BatchNorm and ReLU (and their backward passes) touch a quarter of the
    elements. Where BatchNorm's scale is positive the two orders give the same maximum; only the
    statistics BatchNorm normalises by differ (the pooled map's).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def separable_conv_bn_relu(in_channels: int, out_channels: int, *, padding: int = 1) -> nn.Sequential:
    """Depthwise 3x3 conv -> BN -> ReLU -> pointwise 1x1 conv -> BN -> ReLU (MobileNet's unit).

    Costs 9*in + in*out weights instead of 9*in*out: the deep, narrow end of a < 4k-parameter
    network can then be twice as wide for the same budget.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=padding, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        conv_bn_relu(in_channels, out_channels, bias=False, kernel_size=1),
    )
