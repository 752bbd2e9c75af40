"""`transferkit serve`: the FastAPI app (app.py) and its one static page (static/index.html)."""
