"""Feeds stream: the memory a parse takes does not grow with the feed."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.feeds import FeedRecord, read_feed
from tests.conftest import ROOT

MB = 1 << 20


def write_yml(path: Path, offers: int, description_bytes: int) -> None:
    """A YML feed, written as it goes; each offer carries a description of about `description_bytes`."""
    description = "Платье из вискозы. " * (description_bytes // 35 + 1)
    with path.open("w", encoding="utf-8") as feed:
        feed.write('<?xml version="1.0" encoding="UTF-8"?>\n<yml_catalog date="2024-05-14"><shop><categories>\n')
        feed.write('<category id="1">Женская одежда</category><category id="2" parentId="1">Платья</category>\n')
        feed.write("</categories><offers>\n")
        for i in range(offers):
            feed.write(
                f'<offer id="{i}"><url>https://s.example/p/{i}</url><price>{100 + i % 9000}</price>'
                f"<currencyId>RUR</currencyId><categoryId>2</categoryId><picture>https://s.example/{i}/1.jpg</picture>"
                f"<name>Платье {i}</name><description>{description}</description><param name='Цвет'>синий</param>"
                "</offer>\n"
            )
        feed.write("</offers></shop></yml_catalog>\n")


def write_jsonl(path: Path, offers: int, description_bytes: int) -> None:
    description = "x" * description_bytes
    with path.open("w", encoding="utf-8") as feed:
        for i in range(offers):
            offer = {"offer_id": i, "title": f"Dress {i}", "image_url": f"https://s.example/{i}.jpg"}
            feed.write(json.dumps({**offer, "description": description}) + "\n")


def traced_peak(source: Path) -> tuple[int, int]:
    """(records read, peak bytes allocated while reading them)."""
    tracemalloc.start()
    try:
        count = sum(isinstance(item, FeedRecord) for item in read_feed(source))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("writer", "name"), [(write_yml, "big.yml"), (write_jsonl, "big.jsonl")])
def test_a_feed_larger_than_the_memory_it_takes(tmp_path, writer: Callable, name: str):
    # Few offers with large descriptions: 20 MB of feed, quick to trace.
    feed = tmp_path / name
    writer(feed, 2000, 10_000)
    assert feed.stat().st_size > 20e6
    count, peak = traced_peak(feed)
    assert count == 2000
    assert peak < MB, f"{peak / MB:.1f} MB"


@pytest.mark.slow
def test_200k_offers_parse_in_flat_memory(tmp_path):
    # tracemalloc would take a minute here, so a fresh interpreter reports its peak RSS instead: read a
    # small feed first (imports, caches), then the 200K-offer one, and see how far the peak moved.
    small, large = tmp_path / "small.yml", tmp_path / "large.yml"
    write_yml(small, 2_000, 0)
    write_yml(large, 200_000, 0)
    script = f"""
import resource
from pathlib import Path
from indexer.feeds import FeedRecord, read_feed
from tests.conftest import ROOT

def count(path):
    return sum(isinstance(item, FeedRecord) for item in read_feed(Path(path)))

assert count({str(small)!r}) == 2_000
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert count({str(large)!r}) == 200_000
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    growth_mb = int(result.stdout) / 1024  # ru_maxrss is in KiB on Linux
    assert growth_mb < 16, f"the peak grew {growth_mb:.0f} MB over a {large.stat().st_size / MB:.0f} MB feed"
