"""Index a catalogue into the vector store.

    python -m indexer folder ../shared/data/clothing/train --shop demo --mapping indexer/mappings/clothing.txt

Where the store lives and which detector and embedder run come from the settings (LOOKALIKE_*).
Each photo's product is detected and cropped before it is embedded, as the service does with a
shopper's photo; `--no-detect` (or LOOKALIKE_DETECT=false) embeds whole photos — index and serve
with the same choice. The embedded store is single-writer: index while the API service is
stopped, or use a Qdrant server.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path

from bentoml.exceptions import NotFound

from indexer.pipeline import MainItems, index_offers, load_local_image
from indexer.sources import iter_folder_offers
from lookalike.engines import load_detector, load_embedder
from lookalike.mapping import CategoryMapping, MappingError, UnmappedReport
from lookalike.settings import get_settings
from lookalike.store import SchemaMismatchError, StoreBusyError, open_store
from lookalike.taxonomy import Rubricator, load_rubricator

log = logging.getLogger("indexer")


def make_categorizer(mapping_file: Path | None, rubricator: Rubricator, unmapped: UnmappedReport):
    """Shop category path -> rubricator id: through the mapping file, else the path's last segment by name or alias."""
    mapping = CategoryMapping.load(mapping_file, rubricator) if mapping_file else None

    def categorize(shop_path: str) -> int | None:
        if mapping is not None:
            category_id = mapping.map(shop_path)
        else:
            leaf = shop_path.rsplit("/", 1)[-1]
            category_id = rubricator.get(leaf).id if leaf in rubricator else None
        if category_id is None:
            unmapped.record(shop_path)
        return category_id

    return categorize


def with_ancestors(entries, rubricator: Rubricator):
    for offer, image in entries:
        if offer.category_id is not None:
            offer.category_ids = rubricator.self_and_ancestor_ids(offer.category_id)
            offer.gender = offer.gender or rubricator.get(offer.category_id).gender
        yield offer, image


def index_folder(args: argparse.Namespace) -> int:
    settings = get_settings()
    rubricator = load_rubricator()
    unmapped = UnmappedReport()
    categorize = make_categorizer(args.mapping, rubricator, unmapped)
    entries = iter_folder_offers(args.root, shop=args.shop, categorize=categorize, image_base_url=args.image_base_url)
    total = sum(1 for _ in iter_folder_offers(args.root, shop=args.shop, categorize=lambda _: None))
    engine, card = load_embedder(settings.embedder_model)
    locate = None
    if settings.detect and not args.no_detect:
        locate = MainItems(*load_detector(settings.detector_model))
    else:
        log.info("detection is off: every photo is embedded whole")
    load_image = functools.partial(
        load_local_image, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
    )
    with open_store(settings, dims=card.dims) as store:
        stats = index_offers(
            with_ancestors(entries, rubricator),
            embed=engine,
            preset=card.preset,
            store=store,
            load_image=load_image,
            locate=locate,
            batch_size=args.batch_size,
            workers=args.workers,
            total=total,
        )
        log.info("%s; the store holds %d points", stats, store.count())
    if len(unmapped):
        log.warning("unmapped shop categories (indexed without a category):\n%s", unmapped.to_markdown())
    return 0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    folder = commands.add_parser("folder", help="a folder with one sub-folder of images per category")
    folder.add_argument("root", type=Path)
    folder.add_argument("--shop", default="demo", help="shop name stored with every offer")
    folder.add_argument("--mapping", type=Path, help="category mapping file (lookalike/data/MAPPING.md)")
    folder.add_argument("--image-base-url", default="/ui/catalog/", help="URL prefix of the images' relative paths")
    folder.add_argument("--batch-size", type=int, default=32, help="photos per detector and embedder call")
    folder.add_argument(
        "--no-detect", action="store_true", help="embed whole photos, without the detector (as LOOKALIKE_DETECT=false)"
    )
    folder.add_argument("--workers", type=int, default=2, help="threads decoding images")
    folder.set_defaults(run=index_folder)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, MappingError, StoreBusyError, SchemaMismatchError) as error:
        log.error("%s", error)  # the user's input or setup is wrong: say so, no traceback
        return 2
    except NotFound as error:  # a model missing from the BentoML model store
        log.error(
            "%s; import the shipped models (python -m lookalike.modelstore import training/artifacts/embedder, "
            "and .../detector), or index with --no-detect if only the detector is missing.",
            error,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
