"""Building blocks shared by the model families."""

from torch import nn


def conv_bn_relu(
    in_channels: int, out_channels: int, *, padding: int = 0, bias: bool = True, kernel_size: int = 3
) -> nn.Sequential:
    """Convolution (3x3 unless told) -> BatchNorm -> ReLU: the unit every network here is made of.

    ``bias`` is kept where a reference counts conv biases in its parameter total, though
    BatchNorm makes them redundant.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=padding, bias=bias),
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
