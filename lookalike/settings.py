"""Settings for every part of Lookalike, read from the environment (prefix ``LOOKALIKE_``) or ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike.api import limits
from lookalike.store import Quantization


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", env_file=".env", extra="ignore")

    # Vector store: embedded Qdrant Edge at `store_path` unless `qdrant_url` names a server or cluster.
    store_path: Path = Field(Path("var/store"), description="Folder of the embedded Qdrant Edge store.")
    qdrant_url: str | None = Field(
        None, description="Qdrant server or cluster URL; when set, the embedded store is not used."
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key for `qdrant_url`.")
    collection: str = Field("offers", description="Collection (Qdrant server) holding the catalogue.")
    qdrant_shards: int = Field(
        1, ge=1, description="Shards of a new collection on a Qdrant cluster (points placed by id hash)."
    )
    qdrant_replicas: int = Field(1, ge=1, description="Copies of each shard of a new collection on a Qdrant cluster.")
    oversampling: float = Field(
        8.0, ge=1.0, description="Binary-quantisation oversampling before rescoring with full vectors."
    )
    hnsw_ef: int = Field(256, ge=8, description="HNSW search breadth.")
    quantization: Quantization = Field(
        "binary",
        description="Vector codes searched before rescoring (binary: 1 bit per dimension); used when the store is created.",
    )

    # Models.
    embedder_model: str = Field("lookalike-embedder:latest", description="BentoML model tag of the embedder.")
    detector_model: str = Field("lookalike-detector:latest", description="BentoML model tag of the detector.")
    detect: bool = Field(
        True,
        description="Detect the items in photos before embedding them; when off, a photo is one item, whole.",
    )

    # Engines (`lookalike.engines`): which backend runs the models, and on what device.
    engine: Literal["auto", "tensorrt", "onnxruntime", "torch"] = Field(
        "auto",
        description="Inference backend; auto: TensorRT where it imports and a CUDA GPU is present, else ONNX Runtime.",
    )
    gpu: bool = Field(
        False, description="The model services ask BentoML for a GPU and use the GPU batch sizes and latency windows."
    )
    engine_cache_dir: Path = Field(
        Path("var/engines"),
        description="Built TensorRT engines and the timing cache (per GPU model and TensorRT version).",
    )
    trt_precision: Literal["fp16", "fp32", "int8"] = Field(
        "fp16",
        description="TensorRT engine precision; int8 needs a Q/DQ graph (`python -m lookalike.engines quantize`).",
    )
    trt_batch_profile: tuple[int, int, int] = Field(
        (1, 32, 64), description="TensorRT optimisation profile: min, opt and max batch (JSON list)."
    )
    ort_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0: one per physical core.")
    ort_spinning: bool = Field(
        True, description="ONNX Runtime threads spin between ops (faster alone; off when services share few cores)."
    )
    batching: bool = Field(
        True,
        description="Adaptive batching in the model services; off: their APIs are not batchable (each call runs alone).",
    )

    # Data.
    clothing_dir: Path = Field(
        Path("../shared/data/clothing"),
        description="Real photos (folder per class) for the demo, training and benchmarks.",
    )

    catalog_images_dir: Path | None = Field(
        None, description="Folder whose images the page serves at /ui/catalog/ (folder catalogues)."
    )

    # Request limits.
    max_upload_bytes: int = Field(15 * 1024 * 1024, description="Largest accepted image upload.")
    max_image_pixels: int = Field(50_000_000, description="Largest accepted decoded image (width x height).")
    max_top_k: int = Field(100, description="Largest `top_k` a search may ask for.")
    # What one request may cost the API worker; the defaults' reasons are in `lookalike.api.limits`.
    decode_concurrency: int = Field(limits.DECODE_CONCURRENCY, ge=1, description="Image decodes at once.")
    decode_memory_mb: int = Field(
        limits.DECODE_MEMORY_MB, ge=1, description="Estimated decode memory in flight; a photo needing more gets 413."
    )
    decode_wait_s: float = Field(limits.DECODE_WAIT_S, gt=0, description="Longest wait for room to decode (then 503).")
    decode_timeout_s: float = Field(limits.DECODE_TIMEOUT_S, gt=0, description="Longest decode (then 422).")
    body_grace_s: float = Field(
        limits.BODY_GRACE_S, gt=0, description="Seconds a request body may take before its rate is checked."
    )
    body_min_rate: int = Field(
        limits.BODY_MIN_RATE, ge=1, description="Bytes a second a body must average after the grace (else 408)."
    )

    # Search ranking: the weighted mean of the `shape`, `color` and `detail` cosines over a shortlist
    # drawn from each vector with a positive weight (`VectorStore.search_fused`).
    # (0.125, 0.125, 0.75) by the robustness report's Facets table (the best worst-family R@1, ties by
    # the mean): instance R@1 up on every query family against (0.75, 0.25) without detail (photo 0.862
    # -> 0.950, partial 0.528 -> 0.683, hard 0.317 -> 0.537, worst family 0.188 -> 0.334). An embedder
    # without a detail vector is served with shape 0.75 · color 0.25 (`lookalike.schemas.default_weights_for`).
    default_weights: dict[str, float] = Field(
        {"shape": 0.125, "color": 0.125, "detail": 0.75},
        description='Facet weights of a search that gives none, e.g. {"shape": 1, "color": 0}.',
    )
    fusion_shortlist: int = Field(
        100, ge=1, description="Candidates drawn from each weighted vector before fusing (at least `top_k`)."
    )

    # Photos given by URL (`image_url`): fetched with the same byte and pixel limits as uploads.
    fetch_timeout_s: float = Field(5.0, gt=0, description="Total time allowed to fetch one image URL.")
    fetch_max_redirects: int = Field(3, ge=0, description="Redirects followed when fetching an image URL.")
    fetch_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts fetched even though they resolve to private, loopback or link-local addresses "
        '(JSON list, e.g. ["127.0.0.1"]); for tests and in-cluster image stores.',
    )

    # Access (`lookalike.api.auth`): keys in X-API-Key or Authorization: Bearer.
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys that may change data (DELETE /shops/{shop}); none: such endpoints refuse everyone.",
    )
    read_keys_required: bool = Field(False, description="Searches need a key too (read_api_keys or api_keys).")
    read_api_keys: list[SecretStr] = Field(default_factory=list, description="Keys that may search (JSON list).")

    # Browsers: origins allowed to call the API from their pages (CORS), e.g. ["https://shop.example"].
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (JSON list).")


@lru_cache
def get_settings() -> Settings:
    return Settings()
