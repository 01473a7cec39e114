"""The query families of the robustness protocol, and which of them training ever sees.

A family turns a catalogue photo, its garment mask and a query index into a `Query` (the
picture and where the garment is in it); `others` are other catalogue products that a family
may show beside the target (a shop page) or over it (an occluding garment). Five families:

| family | what the shopper sends | makes training views of the shipped embedder |
|---|---|---|
| `photo` | the item photographed at home (`photo.PhotoLikeQuery`) | yes |
| `partial` | a close-up: 30-60% of the garment, the print, the collar (`partial.PartialView`) | yes (fine-tune) |
| `hard` | low light, a colour cast, motion blur, a hand or garment over it (`hardphoto.HardPhoto`) | yes (fine-tune) |
| `screenshot` | a shop app's product page or a grid of products (`screens.Screenshot`) | never |
| `rephoto` | a photo of a screen or a printed page: moire, glare, perspective (`screens.Rephotographed`) | never |

`partial` and `hard` became training views when the shipped embedder was fine-tuned with
`--partial-views 1 --hard-views 1` (before that, only `photo` did). `screens` was written without
reference to `photo` and shares none of its code, and neither of its families ever makes training
views, so two families owe nothing to the generators that trained the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from training.synth.query import Other, Query

MakeQuery = Callable[[Image.Image, np.ndarray, int, Sequence[Other]], Query]


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    trained_on: bool  # training views come from this generator
    build: Callable[[int], MakeQuery]  # seed -> the generator


def _photo(seed: int) -> MakeQuery:
    from training.synth.photo import PhotoLikeQuery

    query = PhotoLikeQuery(seed)
    return lambda image, mask, index, others=(): query.render(image, mask, index)


def _partial(seed: int) -> MakeQuery:
    from training.synth.partial import PartialView

    return PartialView(seed)


def _hard(seed: int) -> MakeQuery:
    from training.synth.hardphoto import HardPhoto

    return HardPhoto(seed)


def _screenshot(seed: int) -> MakeQuery:
    from training.synth.screens import Screenshot

    return Screenshot(seed)


def _rephoto(seed: int) -> MakeQuery:
    from training.synth.screens import Rephotographed

    return Rephotographed(seed)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("photo", "photographed at home: clutter, tilt, light, JPEG", True, _photo),
        Family("partial", "a close-up showing 30-60% of the garment", True, _partial),
        Family("hard", "low light, colour cast, motion blur, occluded by a hand or garment", True, _hard),
        Family("screenshot", "a shop app's product page or a grid of products", False, _screenshot),
        Family("rephoto", "a photo of a screen or a printed page: moire, glare, perspective", False, _rephoto),
    )
}
