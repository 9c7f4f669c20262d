"""Everything napari: reader, writer, sample data, launch, the per-viewer state and its link to
the canvas, review keys, settings; ``layers/`` (what is drawn) and ``docks/`` (the dock widgets).
The only package that imports Qt; a thin skin over the Qt-free core.
"""
