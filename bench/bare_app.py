"""The baseline for count reads: a bare Sanic JSON route, nothing else."""
from sanic import Sanic, json


def create_app() -> Sanic:
    app = Sanic("bare")

    @app.get("/bare")
    async def bare(request):
        return json({"postId": "p1", "count": 1})

    return app
