"""A folder of images with one sub-folder per category: every image in it is one offer.

    catalogue/dress/0001.jpg              offer "dress/0001", category "dress", title "dress 0001"
    catalogue/women/skirt/a.png           offer "women/skirt/a", category "women / skirt", title "skirt a"
    catalogue/b.jpg                       offer "b", no category, title "b"

The offer id is the image's path below the folder without its suffix; the picture is the file's
absolute path. Files that are not images (by suffix, lookalike.images.IMAGE_SUFFIXES) are
skipped; whether an image decodes is the indexer's business, so this source reports no problems.
Folders are walked in name order, one at a time, so a million files never sit in one list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from indexer.feeds.base import PATH_SEPARATOR, FeedProblem, FeedRecord
from lookalike.images import IMAGE_SUFFIXES


def read(root: Path) -> Iterator[FeedRecord | FeedProblem]:
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"catalogue folder {root} does not exist")
    for directory, folders, files in os.walk(root):
        folders.sort()
        here = Path(directory)
        parts = here.relative_to(root).parts
        for name in sorted(files):
            path = here / name
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            yield FeedRecord(
                offer_id="/".join((*parts, path.stem)),
                title=f"{parts[-1]} {path.stem}" if parts else path.stem,
                image_urls=(str(path),),
                category_path=PATH_SEPARATOR.join(parts) or None,
            )
