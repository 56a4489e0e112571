"""How the check measures: the machine's record, hard time caps, the timed loop of training steps.

- :func:`environment`: the GPU's name, torch/CUDA/cuDNN and library versions, cores, load;
- :func:`hard_cap`: a part that overruns its cap is interrupted (``SIGALRM``) and recorded as
  such; the parts before it keep their results;
- :func:`timed_steps`: training steps (``rela_hf.training.training_step``) over a stream of
  batches: warm-up steps first, then a timed window that ends at a step count or a deadline, with
  one device synchronisation at each end (none per step: the host keeps queueing work ahead, as
  in the trainer);
- :func:`fresh_accelerate`: a new Accelerate state between parts (each part builds its own
  ``Accelerator``; the state is a process-wide singleton).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from gpu_check_parts.profiles import usable_cores
from rela_hf.training import training_step

__all__ = [
    "PartTimeout",
    "environment",
    "fresh_accelerate",
    "hard_cap",
    "synchronize",
    "timed_steps",
]

_LIBRARIES = (
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "datasets",
    "accelerate",
    "huggingface_hub",
    "safetensors",
    "pyarrow",
    "numpy",
    "pillow",
    "rela-hf",
)


class PartTimeout(Exception):
    """A part ran past its hard cap."""


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """What ran the check: device name, versions, cores and load."""
    cuda = device.type == "cuda"
    record: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "cores": usable_cores(),
        "load_average": round(os.getloadavg()[0], 2),
    }
    record["libraries"] = {name: _version(name) for name in _LIBRARIES}
    return record


@contextlib.contextmanager
def hard_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`PartTimeout` in the main thread once ``seconds`` have passed."""

    def interrupt(signum: int, frame: Any) -> None:
        raise PartTimeout(f"stopped at its {seconds:.0f} s cap")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fresh_accelerate() -> None:
    """Forget the process-wide Accelerate state: the next ``Accelerator`` takes its own settings."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[dict[str, Any]],
    *,
    batch_size: int,
    warmup_steps: int,
    max_steps: int,
    deadline: float,
    to_views: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """BYOL training steps (phase ``ssl``, EMA 0.99) over ``batches``; images/s of the timed window.

    Args:
        batches: an iterator of batches (a DataLoader's, or resident views cycled).
        warmup_steps: untimed steps first (compilation, cuDNN autotuning, the workers' start).
        max_steps: timed steps at most; the window also ends at ``deadline``
            (``time.perf_counter``).
        to_views: turns a loader batch into ``{"views": ...}`` (the GPU data path's
            ``views_for_batch``); ``None``: the batch already holds the views.

    Returns:
        ``images_per_s`` (images, each with all its views), the steps and seconds behind it, the
        first batch's wait and the warm-up's seconds.
    """
    device = accelerator.device
    unwrapped = accelerator.unwrap_model(model)
    start = time.perf_counter()
    first_batch_s = warmup_s = None
    step, timed, window_start = 0, 0, None
    for batch in batches:
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - start
        if to_views is not None:
            batch = to_views(batch)
        training_step(
            accelerator,
            model,
            optimizer,
            batch,
            phase="ssl",
            momentum=0.99,
            step=step,
            unwrapped=unwrapped,
        )
        step += 1
        if window_start is None and step >= warmup_steps:
            synchronize(device)
            window_start = time.perf_counter()
            warmup_s = window_start - start
            continue
        if window_start is not None:
            timed += 1
            if timed >= max_steps or time.perf_counter() >= deadline:
                break
    synchronize(device)
    seconds = time.perf_counter() - window_start if window_start is not None else 0.0
    if timed == 0:
        raise RuntimeError(f"no timed step: {step} warm-up step(s) used the time or the batches.")
    return {
        "images_per_s": round(timed * batch_size / seconds, 2),
        "timed_steps": timed,
        "timed_seconds": round(seconds, 3),
        "warmup_steps": warmup_steps,
        "warmup_seconds": round(warmup_s or 0.0, 3),
        "first_batch_seconds": round(first_batch_s or 0.0, 3),
    }
