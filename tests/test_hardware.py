"""Precision and memory layout chosen for the hardware, with the capability queries stubbed."""

from __future__ import annotations

import pytest
import torch

from mnist_budget import hardware
from mnist_budget.errors import UserError
from mnist_budget.hardware import (
    compile_mode,
    describe,
    device_type,
    hardware_line,
    resolve_layout,
    resolve_precision,
)


@pytest.fixture
def capabilities(monkeypatch):
    """Set what the device "can do": native bf16 on the CPU, on the GPU, and GPU tensor cores."""

    def set_caps(cpu_bf16: bool = False, gpu_bf16: bool = False, tensor_cores: bool = False) -> None:
        monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: cpu_bf16)
        monkeypatch.setattr(hardware, "cuda_has_native_bf16", lambda: gpu_bf16)
        monkeypatch.setattr(hardware, "cuda_has_tensor_cores", lambda: tensor_cores)

    return set_caps


def test_cpu_with_native_bf16_gets_bf16_mixed(capabilities):
    capabilities(cpu_bf16=True)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"


def test_cpu_without_native_bf16_gets_fp32(capabilities):
    capabilities(cpu_bf16=False)
    assert resolve_precision("auto", "cpu") == "32-true"


@pytest.mark.parametrize(
    ("gpu_bf16", "tensor_cores", "expected"),
    [(True, True, "bf16-mixed"), (False, True, "16-mixed"), (False, False, "32-true")],
)
def test_gpu_precision_follows_its_capabilities(capabilities, gpu_bf16, tensor_cores, expected):
    capabilities(cpu_bf16=True, gpu_bf16=gpu_bf16, tensor_cores=tensor_cores)
    assert resolve_precision("auto", "cuda") == expected


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed", "64-true"])
def test_an_explicit_precision_always_wins(capabilities, explicit):
    capabilities(cpu_bf16=False)
    assert resolve_precision(explicit, "cpu") == explicit


def test_mps_gets_fp32(capabilities):
    capabilities(cpu_bf16=True)
    assert resolve_precision("auto", "mps") == "32-true"


def test_layout_auto_is_channels_last_on_cpu_and_cuda():
    assert resolve_layout("auto", "cuda") == "channels_last"
    assert resolve_layout("auto", "cpu") == "channels_last"
    assert resolve_layout("auto", "mps") == "contiguous"
    assert resolve_layout("channels_last", "cpu") == "channels_last"
    with pytest.raises(UserError, match="nhwc"):
        resolve_layout("nhwc", "cpu")


def test_accelerator_names_map_to_device_types(monkeypatch):
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware.torch.backends.mps, "is_available", lambda: False)
    assert device_type("auto") == "cpu"
    with pytest.raises(UserError, match=r"trainer.accelerator=gpu but torch sees no CUDA GPU here"):
        device_type("gpu")
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: True)
    assert device_type("auto") == "cuda"
    assert device_type("gpu") == device_type("cuda") == "cuda"


def test_hardware_line_names_cpu_isa_bf16_and_threads():
    facts = describe("cpu")
    line = hardware_line(facts)
    assert facts["cpu"] in line and f"{facts['threads']} threads" in line
    assert facts["cpu_capability"] in line
    assert ("native bf16" in line) and (("no native bf16" in line) != facts["cpu_native_bf16"])


def test_onednn_answer_is_a_bool():
    # The real query (not stubbed): whatever this CPU is, it answers True or False without raising.
    assert isinstance(hardware.cpu_has_native_bf16(), bool)


def test_flush_denormals_computes_denormal_floats_as_zero():
    from mnist_budget.hardware import flush_denormals

    tiny = torch.full((8,), 1, dtype=torch.int32).view(torch.float32)  # the smallest denormal, made without arithmetic
    try:
        flush_denormals(True)
        assert bool((tiny * 1.0 == 0).all())
        flush_denormals(False)
        assert bool((tiny * 1.0 > 0).all())
    finally:
        flush_denormals(True)  # the test process's setting (tests/conftest.py)


@pytest.mark.parametrize(
    ("mode", "cuda_graphs", "device", "expected"),
    [
        (None, False, "cuda", None),  # off by default
        ("default", False, "cuda", "default"),
        (None, True, "cuda", "reduce-overhead"),  # CUDA graphs through torch.compile
        ("default", True, "cuda", "reduce-overhead"),
        ("max-autotune", False, "cuda", "max-autotune-no-cudagraphs"),
        ("max-autotune", True, "cuda", "max-autotune"),
        (None, True, "cpu", "default"),  # no CUDA graphs on a CPU: the mode without them
        ("max-autotune", True, "cpu", "max-autotune-no-cudagraphs"),
    ],
)
def test_compile_settings_map_to_torch_compile_modes(mode, cuda_graphs, device, expected):
    assert compile_mode(mode, cuda_graphs, device) == expected


def test_unknown_compile_mode_is_a_user_error():
    with pytest.raises(UserError, match=r"callbacks.compile.mode=fast is unknown"):
        compile_mode("fast", False, "cuda")
