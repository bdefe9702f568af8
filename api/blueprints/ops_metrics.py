from sanic import Blueprint, Request, raw

from api import metrics

bp = Blueprint("metrics")


@bp.get("/metrics")
async def prometheus(request: Request):
    body, content_type = metrics.render()
    return raw(body, content_type=content_type)
