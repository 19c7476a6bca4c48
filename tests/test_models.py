"""Each model: within its budget, built from the right parts, right output shape."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from conftest import CONF_DIR, group_options
from mnist_budget.models import count_parameters

MODELS = group_options("model")

# The classic exercise's rules, which every config in conf/model/ obeys (README.md, "Add a model"):
# what a failure says, so that a newcomer's new config fails with the rule rather than a bare assert.
RULES = (
    "the classic exercise's rules apply to every model config in conf/model/ (README.md, 'Add a model'): "
    "at most `budget` trainable parameters; at least one nn.BatchNorm2d, one nn.Dropout or nn.Dropout2d, "
    "and one nn.AvgPool2d or nn.AdaptiveAvgPool2d (those exact classes, not subclasses; a dropout rate of 0 "
    "counts); (N, 1, 28, 28) in, (N, 10) logits out"
)
# Each required part: the layer classes that count as it (compared by exact type).
REQUIRED_LAYERS = {
    "nn.BatchNorm2d": (nn.BatchNorm2d,),
    "nn.Dropout or nn.Dropout2d": (nn.Dropout, nn.Dropout2d),
    "nn.AvgPool2d or nn.AdaptiveAvgPool2d (average pooling)": (nn.AvgPool2d, nn.AdaptiveAvgPool2d),
}


def config_file(option: str) -> str:
    return f"conf/model/{option}.yaml"


@pytest.mark.parametrize("option", MODELS)
def test_model_within_budget_with_bn_dropout_and_gap(make_cfg, option):
    cfg = make_cfg(f"model={option}")
    net = instantiate(cfg.model.net)
    params = count_parameters(net)
    assert params <= cfg.model.budget, (
        f"{config_file(option)}: {params:,} trainable parameters, over its budget of {cfg.model.budget:,}; {RULES}"
    )
    kinds = {type(layer) for layer in net.modules()}
    missing = [part for part, classes in REQUIRED_LAYERS.items() if not kinds.intersection(classes)]
    assert not missing, (
        f"{config_file(option)}: its network ({cfg.model.net._target_}) has no {'; no '.join(missing)}; {RULES}"
    )


@pytest.mark.parametrize("option", MODELS)
def test_model_maps_a_batch_of_digits_to_ten_logits(make_cfg, option):
    net = instantiate(make_cfg(f"model={option}").model.net).eval()
    shape = tuple(net(torch.zeros(5, 1, 28, 28)).shape)
    assert shape == (5, 10), (
        f"{config_file(option)}: a batch of 5 digits gave logits of shape {shape}, not (5, 10); {RULES}"
    )


def test_gap_cnn_has_the_seed_parameter_count(make_cfg):
    assert count_parameters(instantiate(make_cfg("model=gap_cnn").model.net)) == 17_994


def test_fast_cnn_default_has_its_stated_parameter_count(make_cfg):
    # conf/model/fast_cnn.yaml and the README state this figure.
    assert count_parameters(instantiate(make_cfg("model=fast_cnn").model.net)) == 19_634


def test_fast_cnn_pools_after_one_convolution():
    """The design's point: the second convolution already sees 13x13 maps (docs/performance.md)."""
    from mnist_budget.models.fast_cnn import FastCNN

    shapes = []
    net = FastCNN()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    hooks = [
        conv.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(inp[0].shape[-2:]))) for conv in convs
    ]
    net.eval()(torch.zeros(1, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    assert shapes == [(28, 28), (13, 13), (11, 11), (4, 4), (4, 4)]


def test_separable_fast_cnn_makes_its_4x4_convolutions_depthwise():
    from mnist_budget.models.fast_cnn import FastCNN

    separable = FastCNN(channels=(8, 10, 12, 20, 20), pointwise=0, separable=2)
    depthwise = [m for m in separable.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert [(m.in_channels, m.groups) for m in depthwise] == [(12, 12), (20, 20)]
    # 9*in + in*out weights per 4x4 conv instead of 9*in*out
    plain = FastCNN(channels=(8, 10, 12, 20, 20), pointwise=0)
    assert count_parameters(plain) - count_parameters(separable) == (9 * 12 * 20 - 9 * 12 - 12 * 20 - 2 * 12) + (
        9 * 20 * 20 - 9 * 20 - 20 * 20 - 2 * 20
    )
    assert separable(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_pool_first_normalises_the_pooled_maps_with_the_same_parameters():
    """pool_first moves each max-pool ahead of its BatchNorm and ReLU (blocks.conv_pool_bn_relu):
    the per-element layers then see 13x13 and 4x4 maps instead of 26x26 and 9x9."""
    from mnist_budget.models.fast_cnn import FastCNN

    def norm_sizes(net: nn.Module) -> list[tuple[int, int]]:
        sizes = []
        hooks = [
            m.register_forward_hook(lambda mod, inp, out: sizes.append(tuple(inp[0].shape[-2:])))
            for m in net.modules()
            if isinstance(m, nn.BatchNorm2d)
        ]
        net.eval()(torch.zeros(1, 1, 28, 28))
        for hook in hooks:
            hook.remove()
        return sizes

    assert norm_sizes(FastCNN(pool_first=False)) == [(26, 26), (11, 11), (9, 9), (4, 4), (4, 4)]
    assert norm_sizes(FastCNN(pool_first=True)) == [(13, 13), (11, 11), (4, 4), (4, 4), (4, 4)]
    assert count_parameters(FastCNN(pool_first=True)) == count_parameters(FastCNN())
    # With BatchNorm's scale positive (as initialised) and its statistics frozen, the two orders agree.
    torch.manual_seed(0)
    before, after = FastCNN(pool_first=False), FastCNN(pool_first=True)
    with torch.no_grad():  # same tensors in the same order; only the Sequential indices differ
        for source, target in zip(before.state_dict().values(), after.state_dict().values(), strict=True):
            target.copy_(source)
    images = torch.rand(4, 1, 28, 28)
    assert torch.allclose(before.eval()(images), after.eval()(images), atol=1e-5)


def test_stride_stem_reaches_13x13_without_computing_26x26():
    """stem=stride (a measured speed lever, docs/performance.md): one stride-2 3x3 conv replaces
    conv + max-pool, so no layer sees a 26x26 map; same parameters, same later shapes."""
    from mnist_budget.models.fast_cnn import FastCNN

    sizes = []
    net = FastCNN(pool_first=True, stem="stride")
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: sizes.append(tuple(out.shape[-2:])))
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d))
    ]
    assert net.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    for hook in hooks:
        hook.remove()
    assert sizes == [(13, 13), (11, 11), (9, 9), (4, 4), (4, 4), (4, 4)]
    assert count_parameters(net) == count_parameters(FastCNN(pool_first=True))


def test_an_unknown_stem_is_refused_in_one_line():
    from mnist_budget.errors import UserError
    from mnist_budget.models.fast_cnn import FastCNN

    with pytest.raises(UserError, match="model.net.stem='strided'"):
        FastCNN(stem="strided")


def test_dropout_on_features_drops_pooled_features_and_keeps_the_weights_names():
    """dropout_on=features (the default config's choice, docs/performance.md) moves dropout from the
    4x4 maps to the globally pooled features: in training the maps are then deterministic and the
    logits are not; the weights keep their names, so a checkpoint loads into either."""
    from mnist_budget.models.fast_cnn import FastCNN

    torch.manual_seed(0)
    images = torch.rand(8, 1, 28, 28)
    on_maps, on_features = FastCNN(dropout=0.5, dropout_on="maps"), FastCNN(dropout=0.5, dropout_on="features")
    assert list(on_maps.state_dict()) == list(on_features.state_dict())
    on_maps.train(), on_features.train()
    assert not torch.equal(on_maps.features(images), on_maps.features(images))
    assert torch.equal(on_features.features(images), on_features.features(images))
    assert not torch.equal(on_features(images), on_features(images))
    # At evaluation both are the same function of the same weights.
    on_features.load_state_dict(on_maps.state_dict())
    assert torch.equal(on_maps.eval()(images), on_features.eval()(images))


def test_an_unknown_dropout_place_is_refused_in_one_line():
    from mnist_budget.errors import UserError
    from mnist_budget.models.fast_cnn import FastCNN

    with pytest.raises(UserError, match="model.net.dropout_on='gap'"):
        FastCNN(dropout_on="gap")


@pytest.mark.parametrize("name", group_options("model"))
def test_a_family_default_network_is_its_constructors_default(name):
    # conf/model/<family>.yaml (a network named as its module) and the class built with no
    # arguments are the same network: a newcomer's FastCNN() is the default run's.
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    net_config = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml").net
    module = net_config._target_.rsplit(".", 2)[-2]
    if module != name:
        pytest.skip(f"model={name} is a variant of {module}'s network, not its default")
    torch.manual_seed(0)
    configured = instantiate(net_config)
    torch.manual_seed(0)
    default = get_class(net_config._target_)()
    assert repr(configured) == repr(default)
    assert all(
        torch.equal(a, b) for a, b in zip(configured.state_dict().values(), default.state_dict().values(), strict=True)
    )
