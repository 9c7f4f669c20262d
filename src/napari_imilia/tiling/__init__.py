"""From slide to tiles: tissue detection (``tissue``), the tile grid at a target MPP
(``grid``), IMILIA's DeepZoom tiles (``deepzoom``) and tile decoding in worker processes
ahead of the model (``feed``)."""
