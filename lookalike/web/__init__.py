"""The try-it page, mounted by the API service at /ui; also serves a folder catalogue's images."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lookalike.settings import Settings

PAGE = Path(__file__).with_name("index.html")


async def _index(request):
    return FileResponse(PAGE, media_type="text/html")


def build_ui_app(settings: Settings) -> Starlette:
    routes = [Route("/", _index)]
    if settings.catalog_images_dir is not None and settings.catalog_images_dir.is_dir():
        routes.append(Mount("/catalog", StaticFiles(directory=settings.catalog_images_dir), name="catalog"))
    return Starlette(routes=routes)
