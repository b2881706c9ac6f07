"""bf16 on the CPU: whether the CPU has it natively, which precision a run uses, and the autocast
that applies it (training, evaluation and inference all go through here).

Training: ``SOLVER.AMP.ENABLED`` on a CPU run means bf16 autocast of the forward pass (no
gradient scaler: bf16 has fp32's exponent range), on a CPU with native bf16 only (elsewhere the
run trains fp32: ``sperm_d2.engine.training.prepare_config``). The head grader's config turns it on:
over three seeds per precision its bf16 training was as accurate as fp32 on the demo data and
the SMIDS split (benchmarks/RESULTS.md). Inference and evaluation: the
``SPERM.INFER_PRECISION`` key, one of :data:`PRECISIONS`. Autocast runs convolutions and matrix
products in bf16; the losses still come out fp32 (torch's CPU autocast computes cross-entropy and
BCE in fp32, box-regression losses are promoted against their fp32 targets, detectron2 decodes
boxes in fp32). Softmax scores do come out bf16, so what a model hands back is turned into fp32
again by :func:`to_fp32`: numpy consumers see the same dtypes either way.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Iterator

import torch

from sperm_d2.errors import InputError

logger = logging.getLogger(__name__)

#: ``SPERM.INFER_PRECISION`` values: "auto" picks bf16 where :func:`auto_bf16` allows it
PRECISIONS = ("auto", "bf16", "fp32")

#: "auto" turns bf16 inference on only once its accuracy has been shown equal to fp32 (issue 13:
#: segm AP and image-level accuracy within 1 point on the demo data and one real split).
#: Shown by benchmarks/bench_bf16_parity.py on the demo data, the HuSHeM and the SMIDS test
#: splits (figures and the command: benchmarks/RESULTS.md, "bf16 parity on the CPU").
BF16_PARITY_SHOWN = True

#: CPU features (``torch.cpu.get_capabilities()``) that do bf16 arithmetic in hardware:
#: x86 AVX512-BF16 / AMX-BF16, ARM BF16 / SVE-BF16
NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (without it, torch emulates bf16: slower than
    fp32). Any failure to find out counts as no."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError) as e:  # older torch, or cpuinfo failed on this OS
        logger.debug("CPU capabilities unknown (%s); assuming no native bf16", e)
        return False
    return any(bool(caps.get(name, False)) for name in NATIVE_BF16_FEATURES)


def auto_bf16() -> bool:
    """What "auto" resolves to on this machine's CPU."""
    return BF16_PARITY_SHOWN and cpu_has_native_bf16()


def check_precision(precision: str, key: str = "SPERM.INFER_PRECISION") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; else ValueError in one line."""
    if precision not in PRECISIONS:
        raise InputError(f"{key} = {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def use_bf16(precision: str, device: str | torch.device) -> bool:
    """Whether inference on ``device`` runs under bf16 autocast for ``SPERM.INFER_PRECISION``
    ``precision``. Only the CPU is served: a GPU always runs fp32 here."""
    check_precision(precision)
    if torch.device(device).type != "cpu":
        return False
    if precision == "bf16" and not cpu_has_native_bf16():
        logger.warning("bf16 inference on a CPU without native bf16: emulated, slower than fp32")
    return precision == "bf16" or (precision == "auto" and auto_bf16())


def train_bf16(amp_enabled: bool, device: str | torch.device) -> bool:
    """Whether training runs the CPU bf16 path (``SOLVER.AMP.ENABLED`` on a CPU device); CUDA
    AMP stays detectron2's own AMPTrainer."""
    return bool(amp_enabled) and torch.device(device).type == "cpu"


def amp_emulated(amp_enabled: bool, device: str | torch.device) -> bool:
    """Whether ``SOLVER.AMP.ENABLED`` asks for CPU bf16 training (:func:`train_bf16`) on a CPU
    without native bf16: emulated bf16 trains slower than fp32, so such a run trains fp32."""
    return train_bf16(amp_enabled, device) and not cpu_has_native_bf16()


def autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """CPU bf16 autocast when ``enabled``, else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


@contextlib.contextmanager
def autocast_forward(module: torch.nn.Module) -> Iterator[None]:
    """Within the block, each call of ``module`` (its forward, losses included) runs under CPU
    bf16 autocast, and only that: the backward pass and optimizer step that follow the call stay
    outside, as torch's autocast recipe wants. Hooks on ``module``, removed on exit."""
    stack = contextlib.ExitStack()

    def enter(mod, args):
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))

    def leave(mod, args, output):
        stack.close()

    handles = [
        module.register_forward_pre_hook(enter),
        module.register_forward_hook(leave, always_call=True),  # also when forward raises
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        stack.close()


def cpu_channels_last(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """``model`` in channels-last memory format when it runs on the CPU (in place; returned),
    for models whose convolutions measured faster so (``benchmarks/bench_precision.py``; oneDNN
    then skips layout reorders). On other devices ``model`` is unchanged."""
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


def to_fp32(outputs: Any) -> Any:
    """``outputs`` with every reduced-precision float tensor in it turned into fp32: tensors,
    dicts, lists and tuples of them, and objects holding tensor fields the way detectron2's
    ``Instances`` (``get_fields``/``set``) and ``Boxes`` (``.tensor``) do; changed in place."""
    if isinstance(outputs, torch.Tensor):
        low = outputs.is_floating_point() and outputs.dtype != torch.float32
        return outputs.float() if low and outputs.dtype != torch.float64 else outputs
    if isinstance(outputs, dict):
        return {k: to_fp32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(to_fp32(v) for v in outputs)
    if hasattr(outputs, "get_fields") and hasattr(outputs, "set"):
        for name, value in list(outputs.get_fields().items()):
            outputs.set(name, to_fp32(value))
        return outputs
    if isinstance(getattr(outputs, "tensor", None), torch.Tensor):
        outputs.tensor = to_fp32(outputs.tensor)
    return outputs


class Bf16Inference(torch.nn.Module):
    """``module`` run under CPU bf16 autocast, its outputs back in fp32 (:func:`to_fp32`): what
    detectron2's ``inference_on_dataset`` and the validation loss call when evaluation follows
    a bf16 inference setting. Its ``train``/``eval`` reach ``module``; holds no state of its own."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.train(module.training)

    def forward(self, *args, **kwargs):
        with autocast(True):
            out = self.module(*args, **kwargs)
        return to_fp32(out)


def for_inference(model: torch.nn.Module, bf16: bool) -> torch.nn.Module:
    """``model`` as evaluation should call it: wrapped in :class:`Bf16Inference` when ``bf16``."""
    return Bf16Inference(model) if bf16 else model
