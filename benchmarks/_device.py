"""The device a benchmark's backend computes on, for the scripts here.

A GPU when the backend has one (PyTorch with CUDA, JAX with a GPU as its
default device), else the CPU. TensorFlow is only benchmarked on the CPU.
"""

import os


def torch_device():
    """The device Keras' torch backend computes on.

    CUDA when available, unless `KERAS_TORCH_DEVICE` says otherwise; the
    plain PyTorch contenders and their inputs go there too.
    """
    import torch

    return torch.device(
        os.environ.get("KERAS_TORCH_DEVICE")
        or ("cuda" if torch.cuda.is_available() else "cpu")
    )


def gpu_name(backend):
    """The name of the GPU that `backend` computes on, or None (the CPU)."""
    if backend == "torch":
        import torch

        device = torch_device()
        if device.type == "cuda":
            return torch.cuda.get_device_name(device)
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return device.device_kind
    return None
