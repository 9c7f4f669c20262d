"""Tile embeddings: extractors by name (``extractors``, ViT family in ``vit``), whole-slide
extraction (``extract``) and the per-slide HDF5 cache (``cache``). "Features" here always
means embeddings; GeoJSON objects live in ``export.geojson_objects``."""
