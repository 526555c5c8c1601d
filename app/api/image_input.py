"""Where a photo comes from: ``img_url`` (query parameter, as the original API had it) or a
multipart upload in the field ``image``. Exactly one of the two.

The dependency only validates; the bytes are read by ``ImageInput.load`` once the handler
knows the model is ready, so a disabled endpoint never downloads anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, File, Query, UploadFile

from app.errors import BadRequest, PayloadTooLarge
from app.imaging.fetch import ImageFetcher, parse_url
from app.imaging.photo import Photo


async def read_upload(upload: UploadFile, cap: int, *, one_of_many: bool = False) -> Photo:
    """``one_of_many``: messages name the file (several photos in one request)."""
    data = await upload.read(cap + 1)
    named = one_of_many and upload.filename
    if len(data) > cap:
        what = upload.filename if named else "the upload"
        raise PayloadTooLarge(f"{what} is larger than {cap} bytes", detail={"max_bytes": cap})
    if not data:
        raise BadRequest(
            f"{upload.filename} is empty" if named else "the uploaded file is empty", detail={"bytes": 0}
        )
    return Photo(data=data, source="upload", name=upload.filename)


@dataclass(frozen=True, slots=True)
class ImageInput:
    url: str | None
    upload: UploadFile | None

    async def load(self, fetcher: ImageFetcher, max_upload_bytes: int) -> Photo:
        if self.upload is not None:
            return await read_upload(self.upload, max_upload_bytes)
        assert self.url is not None
        started = time.perf_counter()
        fetched = await fetcher.fetch(self.url)
        if not fetched.data:
            raise BadRequest("img_url returned an empty body", detail={"bytes": 0})
        return Photo(
            data=fetched.data, source="url", fetch_ms=(time.perf_counter() - started) * 1000, name=self.url
        )


async def _image_input(
    img_url: Annotated[
        str | None,
        Query(
            max_length=2048,
            description="http(s) address of a photo (URL-encode it). Give this or upload `image`.",
            examples=["https://upload.wikimedia.org/wikipedia/commons/8/87/Black-capped_Chickadee.jpg"],
        ),
    ] = None,
    image: Annotated[
        UploadFile | None,
        File(description="the photo itself (JPEG, PNG, WebP, BMP or GIF). Give this or `img_url`."),
    ] = None,
) -> ImageInput:
    if (img_url is None) == (image is None):
        raise BadRequest(
            "send exactly one photo: either the query parameter img_url or a multipart upload "
            "in the field 'image'",
            detail={"img_url": img_url is not None, "image": image is not None},
        )
    if img_url is not None:
        parse_url(img_url)  # a malformed URL is a 400 before anything else happens
    return ImageInput(url=img_url, upload=image)


ImageInputDep = Annotated[ImageInput, Depends(_image_input)]
