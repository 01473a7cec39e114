"""Index shops' catalogues into the vector store, incrementally.

    python -m indexer run FEED --shop NAME [--mapping FILE] [--format yml|gmc|csv|jsonl|folder]
                              [--keep-unmapped] [--embedder-url URL [--detector-url URL]]
    python -m indexer status [--json]
    python -m indexer delete-shop NAME --yes
    python -m indexer folder ROOT --shop NAME --mapping FILE      # = run ROOT --format folder --keep-unmapped

`run` brings one shop's offers in the store in line with its feed (`indexer.feeds`: Yandex YML,
Google Merchant XML, CSV, JSON Lines, or a folder of images): new offers are embedded, changed ones
updated (re-embedded only when their picture changed), unchanged ones left alone, and offers that
left the feed deleted once the whole feed was read. Run it again at any time, also after a crash or
`kill -9`: it picks up where the store stands (indexer/pipeline.py). Pictures are fetched with the
API's SSRF-safe fetcher (LOOKALIKE_FETCH_* settings) and cached under the state folder.

Where the store lives and which detector and embedder run come from the settings (LOOKALIKE_*).
Each photo's product is detected and cropped before it is embedded, as the service does with a
shopper's photo; `--no-detect` (or LOOKALIKE_DETECT=false) embeds whole photos: index and serve
with the same choice. `--embedder-url` calls deployed Embedder/Detector services instead of
loading the models here (indexer/remote.py). The embedded store is single-writer: index while the
API service is stopped, or use a Qdrant server; a second indexer on the same folder stops at once.

The state folder (`--state-dir`, default: the store's folder with `-indexer` appended, e.g.
var/store-indexer) holds the runs' records that `status` shows and the image cache (indexer/state.py).
Exit status: 0 done; 1 done, but offers that left the feed were kept (see --max-delete-share);
2 the input or setup is wrong (the message says what).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import httpx
from bentoml.exceptions import NotFound

from indexer.feeds import FeedError, detect_format, read_feed
from indexer.images import ImageCache, ImageLoader
from indexer.offers import OfferMaker
from indexer.pipeline import Engines, MainItems, Models, Options, index_feed
from indexer.remote import RemoteError
from indexer.state import IMAGES_DIR, RUNS_FILE, RunLog, default_state_dir
from lookalike.fetch import ImageFetcher
from lookalike.mapping import Categorizer, MappingError
from lookalike.settings import Settings, get_settings
from lookalike.store import SchemaMismatchError, StoreBusyError, open_store

log = logging.getLogger("indexer")
FORMATS = ("yml", "gmc", "csv", "jsonl", "folder")


def find_models(settings: Settings, args: argparse.Namespace) -> Models:
    """The models that embed: local engines, or the services at --embedder-url (with the local cards).

    Their model store entries are looked up now (a missing model fails the run before it starts);
    the engines are loaded when the first picture needs them."""
    import bentoml

    detect = settings.detect and not args.no_detect
    embedder_model = bentoml.models.get(settings.embedder_model)
    detector_model = bentoml.models.get(settings.detector_model) if detect else None
    fingerprint = f"embedder={embedder_model.tag};detector={detector_model.tag if detector_model else 'off'}"
    if not detect:
        log.info("detection is off: every photo is embedded whole")
    models = Models(fingerprint, lambda: load_engines(settings, args, embedder_model, detector_model))
    if args.embedder_url:
        models.engines()  # connecting costs nothing, and a wrong URL should fail before the run starts
    return models


def load_engines(settings: Settings, args: argparse.Namespace, embedder_model, detector_model) -> Engines:
    from lookalike.engines import load_detector, load_embedder
    from lookalike.modelcard import DetectorCard, EmbedderCard

    if args.embedder_url:
        from indexer.remote import RemoteDetector, RemoteEmbedder

        card = EmbedderCard.from_metadata(embedder_model.info.metadata)
        embed = RemoteEmbedder(args.embedder_url, card)
        locate = None
        if detector_model is not None:
            detector_card = DetectorCard.from_metadata(detector_model.info.metadata)
            detect_url = args.detector_url or args.embedder_url
            locate = MainItems(RemoteDetector(detect_url, len(detector_card.classes)), detector_card)
        log.info("models: the services at %s", ", ".join(dict.fromkeys([args.embedder_url, args.detector_url or ""])))
    else:
        embed, card = load_embedder(str(embedder_model.tag))
        locate = MainItems(*load_detector(str(detector_model.tag))) if detector_model is not None else None
    return Engines(embed=embed, preset=card.preset, locate=locate)


def embedder_dims(settings: Settings) -> dict:
    """The store's vector sizes, from the embedder's card (metadata only: no model is loaded)."""
    import bentoml

    from lookalike.modelcard import EmbedderCard

    return EmbedderCard.from_metadata(bentoml.models.get(settings.embedder_model).info.metadata).dims


def read_column_map(text: str | None) -> dict[str, str] | None:
    """--column-map: JSON ({"offer_id": "sku", ...}) inline, or the path of a file holding it."""
    if not text:
        return None
    source = text if text.lstrip().startswith("{") else Path(text).read_text(encoding="utf-8")
    try:
        column_map = json.loads(source)
    except json.JSONDecodeError as error:
        raise FeedError(f"--column-map is not JSON: {error}") from None
    if not isinstance(column_map, dict) or not all(isinstance(v, str) for v in column_map.values()):
        raise FeedError('--column-map must be a JSON object of column names, e.g. {"offer_id": "sku"}')
    return column_map


class _LogLines:
    """A file for tqdm that logs each refresh as one line (for logs and pipes, where '\\r' redraws garble)."""

    def write(self, text: str) -> None:
        if line := text.strip("\r\n "):
            log.info("%s", line)

    def flush(self) -> None:
        pass


def index_run(args: argparse.Namespace) -> int:
    settings = get_settings()
    feed = Path(args.feed)
    if not feed.exists():
        raise FileNotFoundError(f"feed {feed} does not exist")
    format = args.format or detect_format(feed)
    column_map = read_column_map(args.column_map)
    categorizer = Categorizer.load(args.mapping)
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(settings.store_path)
    options = Options(
        batch_size=args.batch_size,
        model_workers=args.model_workers or (4 if args.embedder_url else 1),
        decode_workers=args.decode_workers,
        in_flight=max(128, 4 * args.concurrency),
        max_delete_share=args.max_delete_share,
    )
    with open_store(settings, dims=embedder_dims(settings)) as store:  # fails at once if another indexer has it
        run_models = find_models(settings, args)
        run_log = RunLog(state_dir / RUNS_FILE)
        fetcher = ImageFetcher.from_settings(
            settings, limits=httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        )
        loader = ImageLoader(
            fetcher,
            None if args.no_image_cache else ImageCache(state_dir / IMAGES_DIR),
            max_bytes=settings.max_upload_bytes,
            concurrency=args.concurrency,
            per_host=args.per_host,
            retries=args.retries,
            allow_files=format == "folder",
        )
        make_offer = OfferMaker(
            args.shop,
            categorizer,
            keep_unmapped=args.keep_unmapped,
            folder_root=feed if format == "folder" else None,
            image_base_url=args.image_base_url,
        )
        previous = run_log.latest_completed(args.shop)
        run_id = run_log.start(args.shop, str(feed.absolute()), format)
        log.info("indexing %s (%s) as shop %r into %s", feed, format, args.shop, _where(settings))
        try:
            summary = index_feed(
                read_feed(feed, format, column_map=column_map),
                shop=args.shop,
                make_offer=make_offer,
                loader=loader,
                models=run_models,
                store=store,
                options=options,
                total=previous.summary.get("records") if previous and previous.summary else None,
                count_total=lambda: sum(1 for _ in read_feed(feed, format, column_map=column_map)),
                progress_file=None if sys.stderr.isatty() else _LogLines(),
                max_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_image_pixels,
            )
        except BaseException as error:
            run_log.finish(run_id, "failed", {"error": f"{type(error).__name__}: {error}"})
            raise
        run_log.finish(run_id, "completed", {**summary.to_dict(), "unmapped": categorizer.unmapped.most_common(50)})
        log.info("%s\nthe store holds %d offers of shop %r", summary, store.count(args.shop), args.shop)
    if len(categorizer.unmapped):
        what = "indexed without a category" if args.keep_unmapped else "skipped; --keep-unmapped keeps them"
        log.warning("unmapped shop categories (%s):\n%s", what, categorizer.unmapped.to_markdown(limit=30))
    return 1 if summary.deletions_held else 0


def status(args: argparse.Namespace) -> int:
    settings = get_settings()
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(settings.store_path)
    runs = RunLog(state_dir / RUNS_FILE).latest()
    counts: dict[str, int] | None = None
    busy = None
    if not settings.qdrant_url and not Path(settings.store_path).exists():
        counts = {}  # no store yet, and status should not create one
    else:
        try:
            with open_store(settings, dims=embedder_dims(settings)) as store:
                counts = {shop: store.count(shop) for shop in sorted(set(store.distinct("shop")) | set(runs))}
        except StoreBusyError:
            busy = "the store is open in another process (an indexer running?): offer counts unknown"
    shops = sorted(set(runs) | set(counts or ()))
    report = [_shop_status(shop, counts, runs.get(shop)) for shop in shops]
    if args.json:
        print(json.dumps({"store": _where(settings), "note": busy, "shops": report}, indent=2, ensure_ascii=False))
        return 0
    print(f"store: {_where(settings)}; runs: {state_dir / RUNS_FILE}" + (f"\n{busy}" if busy else ""))
    if not report:
        print("no shops indexed")
    for row in report:
        offers = "?" if row["offers"] is None else row["offers"]
        print(f"\n{row['shop']}: {offers} offers")
        if row["last_run"] is None:
            print("  no run recorded here")
            continue
        run = row["last_run"]
        print(f"  last run: {run['state']}, started {run['started']}, finished {run['finished'] or '-'}, {run['feed']}")
        summary = run.get("summary") or {}
        if "error" in summary:
            print(f"  error: {summary['error']}")
        if "added" in summary:
            print(
                f"  added {summary['added']}, updated {summary['updated']}, unchanged {summary['unchanged']}, "
                f"deleted {summary['deleted']}, failed {sum(summary['failed'].values())}"
                + (f", deletions held {summary['deletions_held']}" if summary.get("deletions_held") else "")
            )
            for reason, count in summary["failed"].items():
                print(f"    {count} {reason}")
    return 0


def _shop_status(shop: str, counts: dict[str, int] | None, run) -> dict:
    last = None
    if run is not None:
        last = {
            "state": run.state,
            "feed": run.feed,
            "format": run.format,
            "started": _time(run.started),
            "finished": _time(run.finished),
            "summary": run.summary,
        }
    return {"shop": shop, "offers": None if counts is None else counts.get(shop, 0), "last_run": last}


def delete_shop(args: argparse.Namespace) -> int:
    settings = get_settings()
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(settings.store_path)
    with open_store(settings, dims=embedder_dims(settings)) as store:
        count = store.count(args.shop)
        if not args.yes:
            log.warning(
                "would delete the %d offers of shop %r from %s; run again with --yes",
                count,
                args.shop,
                _where(settings),
            )
            return 1
        run_log = RunLog(state_dir / RUNS_FILE)
        run_id = run_log.start(args.shop, "(delete-shop)", None)
        deleted = store.delete_shop(args.shop)
        run_log.finish(run_id, "completed", {"deleted": deleted})
        log.info("deleted %d offers of shop %r; the store holds %d offers", deleted, args.shop, store.count())
    return 0


def _where(settings: Settings) -> str:
    return (
        f"Qdrant at {settings.qdrant_url}, collection {settings.collection}"
        if settings.qdrant_url
        else str(settings.store_path)
    )


def _time(timestamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else None


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mapping", type=Path, help="category mapping file (lookalike/data/MAPPING.md)")
    parser.add_argument("--embedder-url", help="call the Embedder service at this URL instead of loading the models")
    parser.add_argument("--detector-url", help="the Detector service's URL, if not the embedder's")
    parser.add_argument(
        "--no-detect", action="store_true", help="embed whole photos, without the detector (as LOOKALIKE_DETECT=false)"
    )
    parser.add_argument("--image-base-url", default="/ui/catalog/", help="folder format: URL prefix of the images")
    parser.add_argument("--batch-size", type=int, default=32, help="photos per detector and embedder call")
    parser.add_argument("--concurrency", type=int, default=32, help="image requests in flight, overall")
    parser.add_argument("--per-host", type=int, default=8, help="image requests in flight per host")
    parser.add_argument("--retries", type=int, default=3, help="tries after a timeout, a failed connection or a 5xx")
    parser.add_argument(
        "--model-workers", type=int, help="threads calling the models (default 1; 4 with --embedder-url)"
    )
    parser.add_argument("--decode-workers", type=int, default=2, help="threads decoding images")
    parser.add_argument(
        "--max-delete-share",
        type=float,
        default=0.5,
        help="the largest share of a shop's stored offers a run deletes as gone from the feed (default 0.5)",
    )
    parser.add_argument("--no-image-cache", action="store_true", help="neither keep nor revalidate fetched images")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each upsert and failure")
    parser.add_argument("--state-dir", type=Path, help="runs and image cache (default: STORE_PATH-indexer)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="index one shop's feed")
    run.add_argument("feed", type=Path, help="a feed file, or a folder of images")
    run.add_argument("--shop", required=True, help="shop name stored with every offer")
    run.add_argument("--format", choices=FORMATS, help="the feed's format (default: told by its suffix or content)")
    run.add_argument("--column-map", help='csv/jsonl: JSON {"offer_id": "their column", ...}, or a file holding it')
    run.add_argument(
        "--keep-unmapped", action="store_true", help="index offers of unmapped categories without a category"
    )
    _add_run_options(run)
    run.set_defaults(run=index_run)

    folder = commands.add_parser(
        "folder", help="a folder with one sub-folder of images per category (run --format folder)"
    )
    folder.add_argument("feed", type=Path, metavar="root")
    folder.add_argument("--shop", default="demo", help="shop name stored with every offer")
    folder.add_argument("--workers", type=int, dest="decode_workers_alias", help=argparse.SUPPRESS)
    _add_run_options(folder)
    folder.set_defaults(run=index_run, format="folder", column_map=None, keep_unmapped=True)

    show = commands.add_parser("status", help="per shop: offers in the store, the last run and its failures")
    show.add_argument("--json", action="store_true", help="as JSON")
    show.set_defaults(run=status)

    delete = commands.add_parser("delete-shop", help="delete every offer of a shop")
    delete.add_argument("shop")
    delete.add_argument("--yes", action="store_true", help="do it (without: say how many offers would go)")
    delete.set_defaults(run=delete_shop)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if getattr(args, "decode_workers_alias", None):
        args.decode_workers = args.decode_workers_alias  # the folder command's older --workers
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per image request otherwise
    if args.verbose:
        log.setLevel(logging.DEBUG)
    try:
        return args.run(args)
    except (FileNotFoundError, MappingError, FeedError, StoreBusyError, SchemaMismatchError, RemoteError) as error:
        log.error("%s", error)  # the user's input or setup is wrong: say so, no traceback
        return 2
    except NotFound as error:  # a model missing from the BentoML model store
        log.error(
            "%s; import the shipped models (python -m lookalike.modelstore import training/artifacts/embedder, "
            "and .../detector), or index with --no-detect if only the detector is missing.",
            error,
        )
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: what was written stays; run again to finish")
        return 130


if __name__ == "__main__":
    sys.exit(main())
