"""Read models: what the console's API, its pages and the CLI show, queried in one place.

Each function is a pure query over a ``Store`` (no web types), returning typed records:
``transmissions`` (one transmission's view, the log), ``activity`` (partners' last contact,
alert counts, what the metrics scrape) and ``stats`` (the rows behind the statistics).
"""
