"""Latency of the API's endpoints against a running service (`make demo`), one request at a time.

    python -m loadtests.bench_api --url http://127.0.0.1:3000 --requests 200

Prints, per endpoint, the server's own time (`took_ms`) and the client's round trip, as medians and
p99 over `--requests` calls spread over the demo catalogue's products and photos. Run it on a quiet
machine; nothing here asserts a number (the targets live in the README and the issue notes).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from lookalike.settings import get_settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def products(photos: list[Path], root: Path) -> list[str]:
    """Demo offer ids: the photos' paths below the catalogue folder, without suffix."""
    return [path.relative_to(root).with_suffix("").as_posix() for path in photos]


def timed(call) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    return (time.perf_counter() - started) * 1000, response


def bench(name: str, calls, requests: int) -> dict[str, float]:
    server, client = [], []
    for index in tqdm(range(requests), desc=name, unit="req"):
        elapsed, response = timed(calls[index % len(calls)])
        response.raise_for_status()
        server.append(response.json()["took_ms"])
        client.append(elapsed)
    return {
        "server p50": statistics.median(server),
        "server p99": percentile(server, 0.99),
        "round trip p50": statistics.median(client),
        "round trip p99": percentile(client, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--shop", default="demo", help="the shop the demo catalogue was indexed as")
    parser.add_argument("--catalogue", type=Path, default=get_settings().clothing_dir / "train")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    photos = sorted(args.catalogue.rglob("*.jpg"))[:: max(1, len(list(args.catalogue.rglob("*.jpg"))) // 50)]
    ids = products(photos, args.catalogue)
    with httpx.Client(base_url=args.url, timeout=60) as http:
        http.get("/readyz").raise_for_status()
        encoded = [base64.b64encode(path.read_bytes()).decode() for path in photos[:20]]
        endpoints = {
            "GET /products/{shop}/{offer_id}/similar": [
                lambda oid=oid: http.get(f"/products/{args.shop}/{oid}/similar", params={"top_k": 10}) for oid in ids
            ],
            "GET /products/.../similar, weights 0.5/0.5": [
                lambda oid=oid: http.get(
                    f"/products/{args.shop}/{oid}/similar", params={"top_k": 10, "weights": "shape:0.5,color:0.5"}
                )
                for oid in ids
            ],
            "POST /search (JSON base64)": [
                lambda b64=b64: http.post("/search", json={"image_base64": b64, "top_k": 10}) for b64 in encoded
            ],
        }
        rows = {
            name: bench(name, calls, args.requests if "similar" in name else args.requests // 4)
            for name, calls in endpoints.items()
        }
    columns = ["server p50", "server p99", "round trip p50", "round trip p99"]
    print(f"\n| endpoint | {' | '.join(c + ' (ms)' for c in columns)} |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.1f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
