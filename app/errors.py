"""The service's one error tree.

Code below ``app/api`` raises these, never ``HTTPException``; ``app.main`` renders every one as
``{"error": {"code", "message", "detail"}}`` with the class's status. Callers catch at the level
they care about::

    ServiceError                      500 internal_error
    ├── BadRequest                    400 bad_request
    │   ├── InvalidURL                400 invalid_url
    │   ├── URLNotAllowed             400 url_not_allowed
    │   └── UnknownTaxon              400 unknown_taxon      (a taxon filter no linked taxonomy holds)
    ├── Unauthorized                  401 unauthorized       (+ WWW-Authenticate)
    ├── Forbidden                     403 forbidden
    ├── RateLimited                   429 rate_limited       (+ Retry-After, RateLimit-*)
    ├── PayloadTooLarge               413 too_large
    ├── UnsupportedMediaType          415 not_an_image
    ├── UndecodableImage              422 undecodable_image
    ├── NotFound                      404 not_found
    │   ├── ModelNotFound             404 model_not_found
    │   └── SpeciesListNotFound       404 species_list_not_found
    ├── ManifestInvalid               409 manifest_invalid   (a reload found a broken manifest)
    ├── TaxonomyMissing               409 taxonomy_missing   (a taxon filter on a model never linked)
    ├── UpstreamError                 502 upstream_error     (the image host failed)
    ├── UpstreamTimeout               504 upstream_timeout   (the image host was too slow)
    ├── InsufficientStorage           507 insufficient_storage (the index volume is full)
    └── Unavailable                   503 unavailable
        ├── ModelUnavailable          503 model_unavailable  (missing on disk, failed to load)
        ├── IndexUnavailable          503 index_unavailable  (no index, or built with another embedder)
        ├── DeadlineExceeded          503 deadline_exceeded  (SERVER_REQUEST_TIMEOUT; + Retry-After)
        └── Overloaded                503 overloaded         (+ Retry-After)

Pillow, httpx and the model runtimes have their errors translated where they are called
(``imaging/decode.py``, ``imaging/fetch.py``, ``models/registry.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        detail: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}
        self.headers = headers or {}


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class InvalidURL(BadRequest):
    code = "invalid_url"


class URLNotAllowed(BadRequest):
    code = "url_not_allowed"


class UnknownTaxon(BadRequest):
    code = "unknown_taxon"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, challenge: str = "Bearer") -> None:
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "not_an_image"


class UndecodableImage(ServiceError):
    status = 422
    code = "undecodable_image"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class SpeciesListNotFound(NotFound):
    code = "species_list_not_found"


class ManifestInvalid(ServiceError):
    status = 409
    code = "manifest_invalid"


class TaxonomyMissing(ServiceError):
    """The request needs a model's GBIF taxonomy and the model has none yet: the server's state,
    not the request, is what is missing (``link-gbif`` makes it)."""

    status = 409
    code = "taxonomy_missing"


class UpstreamError(ServiceError):
    status = 502
    code = "upstream_error"


class UpstreamTimeout(ServiceError):
    status = 504
    code = "upstream_timeout"


class InsufficientStorage(ServiceError):
    """A write the server could not finish for want of space (ENOSPC, a quota, a file-size
    limit); nothing was changed. Not retryable as such: someone has to free space."""

    status = 507
    code = "insufficient_storage"


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"


class ModelUnavailable(Unavailable):
    code = "model_unavailable"


class IndexUnavailable(Unavailable):
    code = "index_unavailable"


class DeadlineExceeded(Unavailable):
    code = "deadline_exceeded"


class Overloaded(Unavailable):
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(
            message,
            detail={"retry_after_s": retry_after_s},
            headers={"Retry-After": str(retry_after_s)},
        )
