"""One module per slide-reading library; each returns a :class:`.base.SlideSource`.

Libraries are imported inside the opening functions, so a missing optional one (wsidicom,
openslide) only matters for the slides that need it.
"""
