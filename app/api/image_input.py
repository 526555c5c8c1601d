"""Where a photo comes from: ``img_url`` (query parameter, as the original API had it) or a
multipart upload in the field ``image``. Exactly one of the two.

The dependency only validates; the bytes are read by ``ImageInput.load`` once the handler
knows the model is ready, so a disabled endpoint never downloads anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, File, Query, UploadFile

from app.api.schemas import ImageInfo
from app.errors import BadRequest, PayloadTooLarge
from app.imaging.decode import DecodedImage
from app.imaging.fetch import ImageFetcher, parse_url
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class ImageSource:
    data: bytes
    kind: Literal["url", "upload"]
    fetch_ms: float | None

    def info(self, image: DecodedImage) -> ImageInfo:
        return ImageInfo(
            source=self.kind,
            format=image.format,
            width=image.width,
            height=image.height,
            bytes=len(self.data),
        )


@dataclass(frozen=True, slots=True)
class ImageInput:
    url: str | None
    upload: UploadFile | None

    async def load(self, fetcher: ImageFetcher, settings: Settings) -> ImageSource:
        if self.upload is not None:
            cap = settings.max_upload_bytes
            data = await self.upload.read(cap + 1)
            if len(data) > cap:
                raise PayloadTooLarge(f"the upload is larger than {cap} bytes", detail={"max_bytes": cap})
            if not data:
                raise BadRequest("the uploaded file is empty", detail={"bytes": 0})
            return ImageSource(data=data, kind="upload", fetch_ms=None)

        assert self.url is not None
        started = time.perf_counter()
        fetched = await fetcher.fetch(self.url)
        if not fetched.data:
            raise BadRequest("img_url returned an empty body", detail={"bytes": 0})
        return ImageSource(data=fetched.data, kind="url", fetch_ms=(time.perf_counter() - started) * 1000)


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
