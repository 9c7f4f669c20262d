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


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An error's text (or its type's name when empty) as one line of at most ``limit``
    characters: library messages (pandas, zlib, tifffile) may span lines or pages."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
