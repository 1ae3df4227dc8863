"""The ASGI entry point: ``uvicorn app.main:app``.

Building the app reads the settings from the environment and nothing else; the model is
loaded by the lifespan when the server starts.
"""

from app.service.factory import create_app

app = create_app()
