"""The web app: runstone's pages (and, later, its HTTP API) over one store (layer 6).

Starlette and uvicorn are imported here and in ``runstone.ui`` only, never by
``import runstone``; they come with ``pip install 'runstone[ui]'``.
"""
