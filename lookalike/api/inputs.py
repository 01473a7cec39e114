"""Reading a request's photo and options, from multipart forms and JSON bodies alike.

Multipart: the photo in the file field `image`, options as text fields (`weights` as JSON or as
`shape:1,color:0.5`). JSON: `image_base64` or `image_url` plus the same options. Either way the
body is cut off while it is read once it passes the limit (a 413, before it is all received; at once
when its Content-Length says so) or once it arrives too slowly (a 408, `lookalike.api.limits`); both
answers close the connection, so the rest of the body is not read either.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from lookalike.api.errors import ApiError, field_name
from lookalike.api.limits import BODY_GRACE_S, BODY_MIN_RATE
from lookalike.schemas import DetectRequest, SearchOptions, SearchRequest, Weights
from lookalike.settings import get_settings

Options = TypeVar("Options", bound=BaseModel)

# Room for the options and the multipart framing around the photo.
_BODY_OVERHEAD = 64 * 1024
# A text field of a form (the options) is never this long; longer is a mistake or an attack.
_MAX_TEXT_FIELD = 16 * 1024
_MAX_FORM_FIELDS = 32
# The photo plus room for a client that sends an option as a file part, so the answer can say which.
_MAX_FORM_FILES = 4
# Answers given before the body was read to its end close the connection: the rest is not read.
_CLOSE = {"Connection": "close"}
_DATA_URL = re.compile(r"data:[\w/+.-]*;base64,", re.IGNORECASE)
_WEIGHT_PAIR = re.compile(r"\s*(\w+)\s*:\s*([^,]+?)\s*")


@dataclass(frozen=True)
class Photo:
    """The photo a request names: its bytes, or the URL to fetch them from."""

    data: bytes | None = None
    url: str | None = None


async def read_search(request: Request, max_bytes: int) -> tuple[Photo, SearchOptions]:
    return await _read(request, max_bytes, SearchRequest, SearchOptions)


async def read_detect(request: Request, max_bytes: int) -> Photo:
    photo, _ = await _read(request, max_bytes, DetectRequest, None)
    return photo


async def _read(request: Request, max_bytes: int, json_model: type, form_model: type | None):
    kind = _content_kind(request)
    limit = _body_limit(max_bytes, base64_encoded=kind == "json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    capped = Request(request.scope, receive=_body_capped(request.receive, limit))
    if kind == "json":
        body = validate(json_model, _json_object(await capped.body()))
        options = (
            None if form_model is None else validate(form_model, body.model_dump(exclude={"image_base64", "image_url"}))
        )
        photo = Photo(url=body.image_url) if body.image_url is not None else Photo(data=_base64(body.image_base64))
        return photo, options
    form = await capped.form(max_files=_MAX_FORM_FILES, max_fields=_MAX_FORM_FIELDS, max_part_size=_MAX_TEXT_FIELD)
    try:
        photo = Photo(data=await _form_image(form))
        fields = {key: value for key, value in form.multi_items() if key != "image"}
        options = None if form_model is None else validate(form_model, _form_options(fields))
        return photo, options
    finally:
        await form.close()


async def read_json(request: Request, model: type[Options], max_bytes: int = _BODY_OVERHEAD) -> Options:
    """A JSON body of at most `max_bytes` as `model`, with the same errors as the photo routes."""
    if _content_kind(request) != "json":
        raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json")
    capped = Request(request.scope, receive=_body_capped(request.receive, max_bytes))
    return validate(model, _json_object(await capped.body()))


def validate(model: type[Options], data: object) -> Options:
    """`model` from `data`, a 422 (400 for an unknown value of a closed list) naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = field_name(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "literal_error":
            raise ApiError(HTTPStatus.BAD_REQUEST, "unknown_value", f"{field}: {message}", field=field) from None
        if first["type"] == "extra_forbidden":
            message = f"unknown field; the fields are {', '.join(sorted(_field_names(model)))}"
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_field", f"{field}: {message}" if field else message, field=field
        ) from None


def parse_weights(text: str) -> dict | str:
    """`{"shape": 1, "color": 0.5}` or `shape:1,color:0.5` -> a dict for `Weights`; anything else as given."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    pairs = [_WEIGHT_PAIR.fullmatch(part) for part in text.split(",")]
    if text and all(pairs):
        return {match.group(1): match.group(2) for match in pairs}
    return text


def _content_kind(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return "json"
    if content_type == "multipart/form-data":
        return "multipart"
    raise ApiError(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        f"send multipart/form-data (the photo in the field 'image') or application/json "
        f"(image_base64 or image_url), not {content_type or 'a body without Content-Type'}",
    )


def _body_limit(max_bytes: int, *, base64_encoded: bool) -> int:
    return (max_bytes * 4 // 3 + 4 if base64_encoded else max_bytes) + _BODY_OVERHEAD


def _too_large(limit: int) -> ApiError:
    return ApiError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "payload_too_large",
        f"the request body is over {limit} bytes",
        headers=_CLOSE,
    )


def _too_slow(received: int, seconds: float, grace_s: float, min_rate: float) -> ApiError:
    return ApiError(
        HTTPStatus.REQUEST_TIMEOUT,
        "request_timeout",
        f"the request body arrived too slowly ({received} bytes in {seconds:.0f} s); after {grace_s:g} s "
        f"it must arrive at {min_rate:g} bytes a second or more",
        headers=_CLOSE,
    )


def _body_capped(receive: Receive, limit: int) -> Receive:
    """`_capped` with the settings' arrival bounds."""
    settings = get_settings()
    return _capped(receive, limit, grace_s=settings.body_grace_s, min_rate=settings.body_min_rate)


def _capped(receive: Receive, limit: int, *, grace_s: float = BODY_GRACE_S, min_rate: float = BODY_MIN_RATE) -> Receive:
    """`receive`, raising a 413 as soon as the body passes `limit` bytes, and a 408 when, after `grace_s`,
    it has arrived at under `min_rate` bytes a second."""
    received = 0
    started: float | None = None

    async def capped_receive() -> Message:
        nonlocal received, started
        loop = asyncio.get_running_loop()
        if started is None:
            started = loop.time()
        try:
            async with asyncio.timeout_at(started + grace_s + received / min_rate):
                message = await receive()
        except TimeoutError:
            raise _too_slow(received, loop.time() - started, grace_s, min_rate) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return capped_receive


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except RecursionError:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_json", "the body is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_json", "the body must be a JSON object")
    return data


def _base64(text: str) -> bytes:
    text = _DATA_URL.sub("", text.strip(), count=1)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "invalid_field",
            "image_base64 is not valid base64 (standard alphabet, padded)",
            field="image_base64",
        ) from None


async def _form_image(form) -> bytes:
    if len(form.getlist("image")) > 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_field", "send one photo in 'image', not several", field="image")
    upload = form.get("image")
    if isinstance(upload, UploadFile):
        return await upload.read()
    if upload is not None:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            "invalid_field",
            "image must be a file part (e.g. curl -F image=@photo.jpg); to give a URL, send JSON with image_url",
            field="image",
        )
    files = [key for key, value in form.multi_items() if isinstance(value, UploadFile)]
    hint = f"; got a file in {files[0]!r}" if files else ""
    raise ApiError(
        HTTPStatus.BAD_REQUEST, "missing_image", f"send the photo in the form field 'image'{hint}", field="image"
    )


def _form_options(fields: dict[str, object]) -> dict[str, object]:
    options: dict[str, object] = {}
    for key, value in fields.items():
        if not isinstance(value, str):
            raise ApiError(
                HTTPStatus.BAD_REQUEST, "invalid_field", f"{key} must be a text field, not a file", field=key
            )
        if value == "":
            continue  # an empty form field means "not given", as HTML forms send them
        options[key] = parse_weights(value) if key == "weights" else value
    return options


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


__all__ = ["Photo", "Weights", "parse_weights", "read_detect", "read_json", "read_search", "validate"]
