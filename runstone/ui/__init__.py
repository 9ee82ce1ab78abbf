"""The web UI: server-rendered pages with small scripts of runstone's own (layer 6).

``pages`` answers each page from a ``Client`` (the same reading path as the
command line and the Python API), ``series`` downsamples metric series for
charts, ``graph`` lays out lineage graphs. ``templates/`` and ``static/``
hold the HTML, CSS and JavaScript; nothing is fetched from elsewhere.
"""
