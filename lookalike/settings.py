"""Settings for every part of Lookalike, read from the environment (prefix ``LOOKALIKE_``) or ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", env_file=".env", extra="ignore")

    # Vector store: embedded Qdrant Edge at `store_path` unless `qdrant_url` names a server or cluster.
    store_path: Path = Field(Path("var/store"), description="Folder of the embedded Qdrant Edge store.")
    qdrant_url: str | None = Field(
        None, description="Qdrant server or cluster URL; when set, the embedded store is not used."
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key for `qdrant_url`.")
    collection: str = Field("offers", description="Collection (Qdrant server) holding the catalogue.")
    oversampling: float = Field(
        8.0, ge=1.0, description="Binary-quantisation oversampling before rescoring with full vectors."
    )
    hnsw_ef: int = Field(256, ge=8, description="HNSW search breadth.")

    # Models.
    embedder_model: str = Field("lookalike-embedder:latest", description="BentoML model tag of the embedder.")
    detector_model: str = Field("lookalike-detector:latest", description="BentoML model tag of the detector.")
    detect: bool = Field(
        True,
        description="Detect the items in photos before embedding them; when off, a photo is one item, whole.",
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
