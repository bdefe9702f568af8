"""The embeddable like button and the demo page.

/static/like-button.<hash>.js   the script; the hash is of its content, so it is cached for a year
/static/like-button.js          302 to the current hashed URL, cached 5 minutes; so is any older hash,
                                so a page written against an earlier release still gets a script
/demo                           a few posts with buttons: the platform seen working in a browser

The script and the page are read and hashed once, in create_app().
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from sanic import Blueprint, Request, html, raw
from sanic.response import redirect

from api.errors import ApiError

bp = Blueprint("browser")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
REDIRECT_CACHE = "public, max-age=300"
_SCRIPT_NAME = re.compile(r"like-button(\.[0-9a-f]{8,64})?\.js")
_DEMO_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class Asset:
    body: bytes
    digest: str          # the first 16 hex digits of the body's sha256

    @property
    def filename(self) -> str:
        return f"like-button.{self.digest}.js"


@dataclass(frozen=True)
class BrowserFiles:
    script: Asset
    demo_html: str


def load() -> BrowserFiles:
    body = (STATIC_DIR / "like-button.js").read_bytes()
    script = Asset(body, hashlib.sha256(body).hexdigest()[:16])
    demo = Template((STATIC_DIR / "demo.html").read_text()).substitute(script_url=f"static/{script.filename}")
    return BrowserFiles(script, demo)


@bp.get("/static/<filename:str>")
async def static(request: Request, filename: str):
    script = request.app.ctx.browser_files.script
    if filename == script.filename:
        return raw(script.body, content_type="text/javascript; charset=utf-8",
                   headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff",
                            "Cross-Origin-Resource-Policy": "cross-origin"})
    if _SCRIPT_NAME.fullmatch(filename):
        # Relative, so it also works behind a proxy that serves the API under a path prefix.
        return redirect(script.filename, status=302, headers={"Cache-Control": REDIRECT_CACHE})
    raise ApiError(404, "not_found", f"No static file named {filename[:80]!r}: the like button is "
                                     "/static/like-button.js.")


@bp.get("/demo")
async def demo(request: Request):
    return html(request.app.ctx.browser_files.demo_html,
                headers={"Cache-Control": "no-cache", "Content-Security-Policy": _DEMO_CSP,
                         "X-Content-Type-Options": "nosniff"})
