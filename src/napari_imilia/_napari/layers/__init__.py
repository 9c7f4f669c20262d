"""Layers napari-imilia draws on the canvas: heatmap, verdict outlines, inspection masks,
cell-class legend, review regions."""
