"""`python -m bench.bare_serve PORT WORKERS`: serve bench.bare_app like `api serve` does."""
import sys

from sanic import Sanic
from sanic.worker.loader import AppLoader

from bench.bare_app import create_app

if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(host="127.0.0.1", port=port, workers=workers, motd=False, access_log=False)
    Sanic.serve(primary=app, app_loader=loader)
