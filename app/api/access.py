"""Who may call the photo and GBIF endpoints, and how often.

API keys (``X-API-Key``) are compared in constant time against every configured key, so the
time taken says nothing about which key was close. Each key (or client address, when no keys
are configured) has a token bucket; the answer carries ``RateLimit-*`` headers, and a request
over the limit gets 429 with ``Retry-After`` before any work is done.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request, Response

from app.core.rate_limit import RateLimiter
from app.errors import Forbidden, RateLimited, Unauthorized
from app.settings import SecuritySettings, Settings


def _key_id(settings: Settings, presented: str | None) -> str | None:
    """Which configured key was presented (its position), checked against all of them."""
    if presented is None:
        return None
    given = presented.encode()
    found = None
    for position, key in enumerate(settings.security.api_keys):
        if secrets.compare_digest(given, key.get_secret_value().encode()):
            found = f"key-{position}"
    return found


async def require_access(
    request: Request,
    response: Response,
    x_api_key: Annotated[
        str | None, Header(description="needed when the service has SECURITY_API_KEYS")
    ] = None,
) -> None:
    services = request.app.state.services
    settings: Settings = services.settings
    if settings.security.api_keys:
        who = _key_id(settings, x_api_key)
        if who is None:
            raise Unauthorized(
                "a valid API key is needed in the X-API-Key header"
                if x_api_key is None
                else "the X-API-Key is not a valid key",
                challenge='ApiKey header="X-API-Key"',
            )
    else:
        who = f"addr-{request.client.host if request.client else 'unknown'}"
    limiter: RateLimiter | None = services.rate_limiter
    if limiter is None:
        return
    decision = limiter.hit(who)
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_s),
    }
    if not decision.allowed:
        raise RateLimited(
            f"rate limit of {settings.security.rate_limit_per_minute} requests per minute reached; "
            f"retry in {decision.retry_after_s} s",
            detail={"retry_after_s": decision.retry_after_s},
            headers={**headers, "Retry-After": str(decision.retry_after_s)},
        )
    response.headers.update(headers)


AccessDep = Depends(require_access)


def require_admin(settings: SecuritySettings, authorization: str | None, what: str) -> None:
    """Writes (index items, model reloads) need ``Authorization: Bearer <SECURITY_ADMIN_TOKEN>``; with no
    token configured they are off."""
    if settings.admin_token is None:
        raise Forbidden(f"{what} is disabled over HTTP: set SECURITY_ADMIN_TOKEN to enable it")
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.admin_token.get_secret_value()
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized(f"{what} needs 'Authorization: Bearer <SECURITY_ADMIN_TOKEN>'")
