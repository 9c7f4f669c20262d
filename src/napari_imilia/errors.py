"""Exceptions a user can act on. Each message names the input and what to do about it."""


class ImiliaError(Exception):
    """Base class: a problem with something the user gave (file, parameter, checkpoint)."""


class SlideError(ImiliaError):
    """A slide cannot be opened or read."""


class SlideMPPError(SlideError):
    """A slide has no usable pixel size (µm/px) and none was given."""


class CheckpointError(ImiliaError):
    """A model checkpoint is missing, corrupt, unsafe, or does not fit the architecture."""


class FeatureCacheError(ImiliaError):
    """A feature file is malformed or was made with other settings."""


class DataError(ImiliaError):
    """A table, label file or GeoJSON given by the user is malformed."""
