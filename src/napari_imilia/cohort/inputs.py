"""What a cohort run is given, checked and made absolute on the client before any task is sent.

Workers of a shared dask cluster run in other folders (often on other machines), so every path
a task receives must be absolute: the slides (found by
:func:`~napari_imilia.slide.discover.discover_slides`), the output and cache folders, and the
settings' model, extractor weights and tile coordinates
(:meth:`~napari_imilia.predict.settings.PredictSettings.absolute`), all through
:func:`~napari_imilia.trust.paths.absolute_path`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_imilia.errors import ImiliaError
from napari_imilia.trust.paths import absolute_path

#: Run options of predict_slide that hold paths (made absolute before they are sent).
PATH_OPTIONS: tuple[str, ...] = ("cache_dir",)


def absolute_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every path in :data:`PATH_OPTIONS` absolute."""
    options = dict(options)
    for name in PATH_OPTIONS:
        if options.get(name):
            options[name] = str(absolute_path(options[name]))
    return options


def check_unique_slide_ids(slides: Sequence[str | Path]) -> None:
    """Raise ``ImiliaError`` when two slides would write the same ``OUT/<slide_id>``."""
    from napari_imilia.slide import slide_id_for

    counts = Counter(slide_id_for(s) for s in slides)
    clashes = sorted(name for name, n in counts.items() if n > 1)
    if clashes:
        paths = [str(s) for s in slides if slide_id_for(s) in clashes]
        raise ImiliaError(
            f"slides share the slide id(s) {', '.join(clashes)} (file name without extension), "
            f"so their results and feature caches would overwrite each other: {paths[:6]}; "
            "rename them or score them into different --out folders"
        )


def check_scheduler_address(address: str) -> str:
    """The scheduler ``address`` with its protocol (``tcp://`` when none is given), or
    ``ImiliaError`` naming what is wrong with it: no port, a port out of range, no host, or a
    protocol dask does not know."""
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port

    text = address.strip()
    example = "give it as tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
    if not text:
        raise ImiliaError(f"--scheduler is empty; {example}")
    if "://" not in text:
        text = f"tcp://{text}"
    try:
        scheme, location = parse_address(text, strict=True)
    except ValueError as error:
        raise ImiliaError(
            f"scheduler address {address!r} is malformed ({error}); {example}"
        ) from error
    if scheme not in registry.backends:
        known = ", ".join(f"{name}://" for name in registry.backends)
        raise ImiliaError(
            f"scheduler address {address!r} has the unknown protocol {scheme}://; use one of "
            f"{known}"
        )
    if scheme == "inproc":
        return text
    try:
        host, port = parse_host_port(location)
    except ValueError as error:
        raise ImiliaError(
            f"scheduler address {address!r} has no port; {example} (8786 is dask's default)"
        ) from error
    if not host:
        raise ImiliaError(f"scheduler address {address!r} has no host; {example}")
    if not 0 < int(port) < 65536:
        raise ImiliaError(f"scheduler address {address!r}: port {port} is not in 1-65535")
    return text
