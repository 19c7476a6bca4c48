"""The default network: pools after the first convolution, so that most work runs at low resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnist_budget.errors import UserError
from mnist_budget.models.blocks import check_rates, conv_bn_relu, conv_pool_bn_relu, separable_conv_bn_relu
from mnist_budget.models.deskew import Deskew

STEMS = ("pool", "stride", "double")  # how the first stage reaches 13x13 (or 12x12): FastCNN's stem


class FastCNN(nn.Module):
    """28 -conv-> 26 -pool-> 13 -conv-> 11 -conv-> 9 -pool-> 4 -conv(pad 1)-> 4 -1x1 conv-> GAP -> Linear.

    With ``pool_first`` each pool sits between its convolution and the convolution's BatchNorm +
    ReLU, which then work on the pooled map.

    Why this shape: on a CPU a small network's step time goes mostly to per-element work
    (BatchNorm, ReLU, pooling) on the large early feature maps, not to the convolutions'
    multiply-adds, so widening the first convolution costs far more than its parameters suggest.
    Pooling right after one narrow convolution shrinks every later map 4x; the parameters sit at
    11x11 and below, where they are cheap, and a 1x1 convolution at 4x4 adds depth for almost
    nothing. Receptive field: 22 px, about a digit's 20 px box. Convolutions carry no bias
    (BatchNorm follows each). Dropout acts on the pooled 4x4 maps or, with
    ``dropout_on="features"``, on the globally pooled features: far fewer random draws per batch,
    and drawing them is most of dropout's cost on a CPU. The measurements behind each choice:
    docs/performance.md (levers).
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32, 40),
        pointwise: int = 40,
        dropout: float = 0.02,
        num_classes: int = 10,
        separable: int = 0,
        deskew: bool = False,
        pool_first: bool = True,
        stem: str = "pool",
        dropout_on: str = "features",
    ) -> None:
        """``channels``: the first conv, the two 13->9 convs, then one entry per padded 3x3 conv at
        4x4 (an entry of 0 leaves that conv out, so that a search can choose how many there are:
        conf/hparams_search/architecture.yaml); ``pointwise``: width of the 1x1 conv before pooling (0: none); ``separable``: how many
        of the last 3x3 convs are depthwise-separable (``blocks.separable_conv_bn_relu``; more than
        there are: every conv but the first), for the
        smallest budgets (the first conv, on one input channel, never is); ``deskew``: shear each
        input upright first (``mnist_budget.models.deskew``, no parameters); ``pool_first``: pool
        each pooled stage before its BatchNorm and ReLU (``blocks.conv_pool_bn_relu``), which does
        the per-element work on a quarter of the elements (a separable conv keeps its order);
        ``stem``: how 28x28 becomes 13x13, ``pool`` (3x3 conv to 26x26, then a 2x2 max-pool) or
        ``stride`` (one 3x3 conv with stride 2, no pool: nothing is computed at 26x26), or 12x12:
        ``double`` (two 3x3 convs of ``channels[0]`` to 24x24, then the pool: more work at full
        resolution for ``9 * channels[0]**2`` more weights, which the smallest budgets can afford);
        ``dropout_on``: where ``dropout`` acts, ``maps`` (the pooled 4x4 maps, after the 9x9 stage)
        or ``features`` (the globally pooled features, before the Linear layer). The defaults are
        conf/model/fast_cnn.yaml's; checkpoints saved before ``pool_first`` and ``dropout_on``
        existed were trained with ``False`` and ``maps`` (mnist_budget.checkpoints fills them in)."""
        super().__init__()
        check_rates(dropout=dropout)
        if stem not in STEMS:
            raise UserError(
                f"model.net.stem={stem!r} is invalid: use pool (conv + max-pool), stride (a stride-2 conv) or "
                "double (two convs + max-pool)"
            )
        if dropout_on not in ("maps", "features"):
            raise UserError(
                f"model.net.dropout_on={dropout_on!r} is invalid: use maps (the pooled 4x4 maps) or features (after the global pool)"
            )
        c1, c2, c3, *tail = channels
        if min(c1, c2, c3, *tail) < 0 or 0 in (c1, c2, c3):
            raise UserError(
                f"model.net.channels={list(channels)} is invalid: the first three widths must be positive and the "
                "4x4 convs' widths positive or 0 (none)"
            )
        tail = [width for width in tail if width]
        channels = [c1, c2, c3, *tail]
        if separable < 0:
            raise ValueError(f"separable={separable} must be 0 or more (convs after the first)")
        separable = min(separable, len(channels) - 1)  # so that a search can pair it with any number of 4x4 convs
        first_separable = len(channels) - separable  # index into channels

        def conv(index: int, width: int, out: int, padding: int) -> nn.Module:
            if index >= first_separable:
                return separable_conv_bn_relu(width, out, padding=padding)
            return conv_bn_relu(width, out, padding=padding, bias=False)

        def pooled_conv(index: int, width: int, out: int) -> list[nn.Module]:
            if pool_first and index < first_separable:
                return [conv_pool_bn_relu(width, out)]
            return [conv(index, width, out, padding=0), nn.MaxPool2d(2)]

        stem_layers = {
            "pool": lambda: pooled_conv(0, 1, c1),
            "stride": lambda: [conv_bn_relu(1, c1, bias=False, stride=2)],
            # 28 -> 26 -> 24, pooled to 12: the 12 -> 10 -> 8 convs then pool to 4x4 as before.
            "double": lambda: [conv_bn_relu(1, c1, bias=False), *pooled_conv(0, c1, c1)],
        }[stem]()
        layers: list[nn.Module] = [
            *stem_layers,
            conv(1, c1, c2, padding=0),
            *pooled_conv(2, c2, c3),
            # An Identity in its place keeps the later layers' indices, so the weights' names
            # (and so checkpoints) are the same wherever dropout acts.
            nn.Dropout(dropout) if dropout_on == "maps" else nn.Identity(),
        ]
        width = c3
        for index, out in enumerate(tail, start=3):  # 4x4 stage: padded 3x3 convolutions
            layers.append(conv(index, width, out, padding=1))
            width = out
        if pointwise:
            layers.append(conv_bn_relu(width, pointwise, bias=False, kernel_size=1))
            width = pointwise
        self.deskew = Deskew() if deskew else nn.Identity()
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout_on == "features" else nn.Identity()
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (batch, num_classes)."""
        return self.classifier(self.dropout(self.pool(self.features(self.deskew(x))).flatten(1)))
