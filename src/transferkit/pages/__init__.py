"""Local pages over the data tools: the review page (fix labels, duplicates, outliers) and the labelling page (label
what the model asks for next). Both answer on 127.0.0.1 only, work offline (their JS and CSS are inlined), and write
every click at once to an embedded SQLite file beside their output.

    from transferkit.pages.review import serve_review
    serve_review(result, "review-out/")                    # what `transferkit review DATA --serve` does

    from transferkit.pages.label import LabelSession, serve_label
    serve_label(LabelSession.open("pool/", ["ant", "bee"], out_dir="labelling/"))     # `transferkit label`

Needs FastAPI and uvicorn (`pip install 'transferkit[serve]'`); importing this package imports neither.
"""
