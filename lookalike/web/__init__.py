"""The try-it page, mounted by the API service at /ui; also serves a folder catalogue's images.

    /ui/              index.html: plain HTML, CSS and JavaScript modules, no build step
    /ui/<name>.js     the page's modules (app.js imports the others), <name>.css its style sheet
    /ui/config.json   the limits the page checks before sending (upload size, top_k), the default weights
    /ui/catalog/...   a folder catalogue's images (LOOKALIKE_CATALOG_IMAGES_DIR)

The page talks to the public JSON API only (docs/api.md), as a shop's app would. Its
Content-Security-Policy keeps scripts, styles and API calls on this server: nothing of the page
comes from the internet (product images may, from wherever the catalogue keeps them).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lookalike.schemas import default_weights_for
from lookalike.settings import Settings

HERE = Path(__file__).parent
PAGE = HERE / "index.html"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}
# The page's own files, by name; nothing else in this folder (this module, say) is served.
ASSETS = {path.name: path for path in sorted(HERE.iterdir()) if path.suffix in MEDIA_TYPES}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src * data: blob:; object-src 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # A new deploy's page and modules are fetched again (revalidated by ETag), never mixed with old ones.
    "Cache-Control": "no-cache",
}


async def _index(request):
    return FileResponse(PAGE, media_type="text/html", headers=SECURITY_HEADERS)


async def _asset(request):
    path = ASSETS.get(request.path_params["name"])
    if path is None:
        raise HTTPException(404)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)


def build_ui_app(settings: Settings, vector_names: tuple[str, ...] | None = None) -> Starlette:
    """The page's app; `vector_names`: the served embedder's vectors, so that the page starts at the
    weights the API serves it with (`default_weights_for`); None: the setting as it is."""
    defaults = (
        settings.default_weights
        if vector_names is None
        else default_weights_for(vector_names, settings.default_weights)
    )
    config = {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_top_k": settings.max_top_k,
        "default_weights": defaults,  # where the facet slider starts
    }

    async def _config(request):
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    routes = [Route("/", _index), Route("/config.json", _config)]
    if settings.catalog_images_dir is not None and settings.catalog_images_dir.is_dir():
        routes.append(Mount("/catalog", StaticFiles(directory=settings.catalog_images_dir), name="catalog"))
    routes.append(Route("/{name:str}", _asset))
    return Starlette(routes=routes)
