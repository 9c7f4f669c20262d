"""Everything napari: reader, writer, sample data, launch, settings; the per-viewer state
(``state``: session, cohort, loaded models, inspections) and the viewer link that draws every
layer from it (``link``), the review keys that act on it (``keys``, ``recording``), one
``notify``; ``layers/`` (what is drawn) and ``docks/`` (the dock widgets, which show and edit
the state). Imports run one way: state, then layers, then the link, then keys, then docks.
The only package that imports Qt; a thin skin over the Qt-free core.
"""
