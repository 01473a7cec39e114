"""Give an indexed folder catalogue prices, currencies and colours, so that the API's filters have
something to filter: `python -m tests.integration.priced CATALOGUE_DIR SHOP` (the store from the settings).

Folder catalogues carry none of these (feeds do); the values are a deterministic function of each
offer's position in sorted order, which `price_of` and friends give the tests too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bentoml
import numpy as np

from lookalike.modelcard import EmbedderCard
from lookalike.settings import get_settings
from lookalike.store import open_store

COLORS = ("black", "red", "blue")
DOOMED_SHOP, DOOMED_OFFERS = "doomed-shop", 2


def offer_ids(catalogue: Path) -> list[str]:
    return sorted(path.relative_to(catalogue).with_suffix("").as_posix() for path in catalogue.rglob("*.jpg"))


def price_of(index: int) -> float:
    return 1000.0 + 500.0 * (index % 6)


def currency_of(index: int) -> str:
    return "USD" if index % 4 == 0 else "RUB"


def color_of(index: int) -> str:
    return COLORS[index % len(COLORS)]


def main(catalogue: Path, shop: str) -> None:
    card = EmbedderCard.from_metadata(bentoml.models.get(get_settings().embedder_model).info.metadata)
    with open_store(get_settings(), dims=card.dims) as store:
        stored = [store.vectors_of(shop, offer_id) for offer_id in offer_ids(catalogue)]
        offers = [
            item.offer.model_copy(update={"price": price_of(i), "currency": currency_of(i), "color": color_of(i)})
            for i, item in enumerate(stored)
        ]
        vectors = {name: np.stack([s.vectors[name] for s in stored]) for name in card.dims}
        store.upsert(offers, vectors["shape"], vectors["color"], detail=vectors.get("detail"))
        # A second, tiny shop for the tests that delete one.
        doomed = [offer.model_copy(update={"shop": DOOMED_SHOP}) for offer in offers[:DOOMED_OFFERS]]
        head = {name: matrix[:DOOMED_OFFERS] for name, matrix in vectors.items()}
        store.upsert(doomed, head["shape"], head["color"], detail=head.get("detail"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
