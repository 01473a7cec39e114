"""Pixel batches uploaded as .npy files: the model services' `<api>_npy` APIs.

BentoML takes an array from a caller outside the server only as JSON, so a batch of 32 crops travels
as 4.8M numbers; as one `numpy.save` file it arrives ~8x sooner (`indexer.remote`). The file is
checked here before any model sees it, and every problem is a 400 that says what to send.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bentoml.exceptions import InvalidArgument

# The most images one `<api>_npy` call takes (the indexer splits larger batches): 256 photos at 320 px
# are 79 MB of pixels, and the answer is held twice more (as an array, then as JSON).
MAX_NPY_IMAGES = 256


def read_npy_batch(path: Path, size: int, what: str) -> np.ndarray:
    """An uploaded .npy file -> its (n, size, size, 3) uint8 batch in memory, or InvalidArgument
    (HTTP 400) saying what to send; `what` names the images ("crops", "letterboxed photos").

    The file is memory-mapped, so a header declaring a huge array is refused for want of data before
    anything is allocated (a plain `np.load` allocates what the header declares); pickles are never loaded.
    """
    expected = f"numpy.save's output of a uint8 array (n, {size}, {size}, 3) of {what}, n from 1 to {MAX_NPY_IMAGES}"
    try:
        pixels = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        reason = str(error)
        if "pickle" in reason:  # numpy's own words advise loading it anyway: not what a caller should do
            reason = "it holds pickled objects or is no .npy file at all"
        elif "mmap length" in reason:
            reason = "it holds less data than its header declares"
        raise InvalidArgument(f"pixels could not be read as .npy ({reason}); send {expected}") from None
    if pixels.dtype != np.uint8:
        raise InvalidArgument(f"pixels has dtype {pixels.dtype}; send {expected} (RGB values 0-255, not normalised)")
    if pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
        raise InvalidArgument(f"pixels has shape {pixels.shape}; send {expected}")
    if not 1 <= len(pixels) <= MAX_NPY_IMAGES:
        advice = "split larger batches" if len(pixels) else "an empty batch needs no call"
        raise InvalidArgument(f"pixels holds {len(pixels)} images; send {expected} ({advice})")
    return np.array(pixels, order="C")  # read in: the engine gets a plain array, not the mapped file
