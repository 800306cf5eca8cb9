"""Process-wide settings that make training fast (the C allocator, GPU matmul modes), and out-of-memory handling.

A training step allocates and frees the same large buffers (weight casts,
gradients, logits) every time. glibc hands blocks above its mmap threshold
back to the kernel on free, so each step pays for page faults on hundreds of
MB (~15% of a CPU step). Raising the threshold, never trimming the heap and
keeping one arena (so worker threads share the main heap, where big blocks
can be reused) makes those allocations cheap again; the memory freed stays
with the process for its next step. This is what ``LD_PRELOAD``-ing tcmalloc
buys, done from inside the process. The heap then holds a few hundred MB more
than it would otherwise (aligned big blocks fragment it a little);
``release_free_memory`` hands all of it back once a run is over.

torch is imported inside the functions that use it: the CLI tunes the
allocator first thing, before it knows whether the command needs torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_lock = threading.Lock()
_malloc_tuned: bool | None = None
_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux (musl and others lack or ignore these knobs)."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.gnu_get_libc_version  # only glibc has it
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.mallopt.restype = ctypes.c_int
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.malloc_trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def tune_malloc() -> bool:
    """Keep freed big blocks for reuse (glibc on Linux only); True when the settings took.

    Call it early, before threads start, so that they share the main arena.
    Safe to call again; does nothing elsewhere.
    """
    global _malloc_tuned
    with _lock:
        if _malloc_tuned is not None:
            return _malloc_tuned
        _malloc_tuned = False
        libc = _glibc()
        if libc is None:
            return False
        mallopt = libc.mallopt
        ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
        ok = mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1 and ok
        ok = mallopt(_M_ARENA_MAX, 1) == 1 and ok
        _malloc_tuned = ok
        return ok


def release_free_memory() -> None:
    """Give the heap's free pages back to the system, so an app that goes on after training does not keep them."""
    libc = _glibc()
    if libc is not None and _malloc_tuned:
        libc.malloc_trim(0)


def is_out_of_memory(error: BaseException) -> bool:
    """True for an allocation failure: CUDA's ``OutOfMemoryError``, the CPU allocator's, or Python's.

    Told apart by name and message, so that asking does not import torch.
    """
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def release_device_memory() -> None:
    """Collect dropped tensors and hand the GPU's cached blocks back, after an out-of-memory error."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def configure_for_training(device: "torch.device") -> None:  # noqa: F821
    """Fast defaults for the device: allocator on CPUs, TF32 for fp32 matmuls on NVIDIA GPUs."""
    import torch

    tune_malloc()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
