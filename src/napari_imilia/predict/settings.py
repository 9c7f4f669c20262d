"""``PredictSettings``: every setting that decides a slide's result, in one frozen value.

The model (its path, and once loaded its sha256 and demo flag), the extractor (name, weights
and their sha256), the slide's level-0 µm/px override (``mpp``), the µm/px tiles are read at
(``target_mpp``), the tile side (``tile_px``), the tiling, IMILIA's protocol and the tissue
settings. What only decides where or how fast a result is made (device, batch size, decode
processes, cache folder, slide backend) is not a setting.

The CLI, ``predict_slide``, ``predict_cohort``, ``score_unscored`` and the Slide and model
dock all build one. :meth:`PredictSettings.resolve` fills in the defaults from the loaded
model and extractor (the one place they are decided), and ``slide.json`` records the result;
:func:`napari_imilia.predict.results.reusable_result` compares the two.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, replace
from typing import Any

from napari_imilia.errors import ImiliaError

#: ``detect_tissue`` keywords a user may set (``tissue_params``).
TISSUE_PARAMS: tuple[str, ...] = (
    "saturation_threshold",
    "min_od",
    "remove_pen",
    "min_tissue_area_um2",
    "fill_holes_um2",
    "mask_mpp",
)
#: ``predict_slide`` keywords that stand for a setting (the rest say where or how it runs).
SETTING_KEYWORDS: tuple[str, ...] = (
    "model_path",
    "extractor_name",
    "extractor_weights",
    "mpp",
    "target_mpp",
    "tile_px",
    "min_tissue_fraction",
    "tissue_params",
    "tiling",
    "tiles_from",
    "protocol",
)
DEFAULT_MIN_TISSUE_FRACTION = 0.5


@dataclass(frozen=True)
class PredictSettings:
    """What decides a slide's result (see the module docstring).

    ``model_path`` None is the bundled demo model (several paths: an ensemble);
    ``extractor`` None the model's own; ``mpp`` (level-0 µm/px) None the slide's metadata;
    ``target_mpp`` (µm/px) and ``tile_px`` (pixels at ``target_mpp``) None the model's, then
    the extractor's; ``min_tissue_fraction`` (0-1) the tissue a tile needs; ``tissue`` the
    ``detect_tissue`` settings asked for, as sorted (name, value) pairs without automatic
    (None) or default values; ``tiling`` ``grid`` or ``deepzoom`` (``tiles_from``:
    IMILIA's ``tiles_coords.npy``); ``protocol`` None or ``imilia``. ``model_sha256``,
    ``model_is_demo`` and ``extractor_sha256`` are read from the model and extractor by
    :meth:`resolve`.
    """

    model_path: str | tuple[str, ...] | None = None
    extractor: str | None = None
    extractor_weights: str | None = None
    mpp: float | None = None
    target_mpp: float | None = None
    tile_px: int | None = None
    min_tissue_fraction: float = DEFAULT_MIN_TISSUE_FRACTION
    tissue: tuple[tuple[str, Any], ...] = ()
    tiling: str = "grid"
    tiles_from: str | None = None
    protocol: str | None = None
    model_sha256: str | None = None
    model_is_demo: bool = False
    extractor_sha256: str | None = None

    @classmethod
    def from_keywords(
        cls,
        *,
        model_path: Any = None,
        extractor_name: str | None = None,
        extractor_weights: Any = None,
        mpp: float | None = None,
        target_mpp: float | None = None,
        tile_px: int | None = None,
        min_tissue_fraction: float | None = None,
        tissue_params: dict[str, Any] | None = None,
        tiling: str | None = None,
        tiles_from: Any = None,
        protocol: str | None = None,
    ) -> PredictSettings:
        """Settings from ``predict_slide``'s keyword arguments, checked.

        ``model_path``: a checkpoint, a folder of them or a list (an ensemble); default the
        demo model. ``extractor_name``: default the extractor the model was trained on;
        ``extractor_weights``: its local weights file. ``mpp`` overrides the slide's level-0
        µm/px; ``target_mpp`` (µm/px) and ``tile_px`` default to the model's, then the
        extractor's. ``min_tissue_fraction`` (0-1, default 0.5): tiles with less tissue are
        dropped. ``tissue_params`` go to :func:`~napari_imilia.tiling.tissue.detect_tissue`
        (``saturation_threshold``, ``min_od``, ``remove_pen``, ``min_tissue_area_um2`` (µm²),
        ``fill_holes_um2`` (µm²), ``mask_mpp`` (µm/px)). ``tiling``: ``grid`` (ours, the
        default) or ``deepzoom`` (IMILIA's openslide DeepZoom tiles at the level nearest to
        ``target_mpp``, tissue-filtered); ``tiles_from``: IMILIA's ``tiles_coords.npy`` for
        the slide (DeepZoom level, column, row), implies ``deepzoom``;
        ``protocol="imilia"``: DeepZoom tiles and bags cut / zero-padded to IMILIA's 10,000
        rows. ``ImiliaError`` for an unknown or bad tissue parameter, tiling or protocol, or
        a missing ``tiles_from`` file.
        """
        from napari_imilia.tiling.deepzoom import check_tiling

        model: str | tuple[str, ...] | None = None
        if isinstance(model_path, list | tuple):  # several: an ensemble; one: that one
            paths = tuple(str(p) for p in model_path)
            model = paths[0] if len(paths) == 1 else (paths or None)
        elif model_path:
            model = str(model_path)
        return cls(
            model_path=model,
            extractor=extractor_name or None,
            extractor_weights=str(extractor_weights) if extractor_weights else None,
            mpp=None if mpp is None else float(mpp),
            target_mpp=float(target_mpp) if target_mpp else None,
            tile_px=int(tile_px) if tile_px else None,
            min_tissue_fraction=float(
                DEFAULT_MIN_TISSUE_FRACTION if min_tissue_fraction is None else min_tissue_fraction
            ),
            tissue=tissue_settings(tissue_params),
            tiling=check_tiling(tiling or "grid", tiles_from, protocol),
            tiles_from=str(tiles_from) if tiles_from else None,
            protocol=protocol,
        )

    @property
    def tissue_params(self) -> dict[str, Any]:
        """The ``detect_tissue`` keywords these settings ask for."""
        return dict(self.tissue)

    def absolute(self) -> PredictSettings:
        """These settings with their paths absolute (``~`` expanded), for workers that run
        in other folders."""
        from napari_imilia.trust.paths import absolute_path

        def made_absolute(path: str | None) -> str | None:
            return None if path is None else str(absolute_path(path))

        model = self.model_path
        if isinstance(model, tuple):
            model = tuple(str(absolute_path(p)) for p in model)
        return replace(
            self,
            model_path=made_absolute(model) if isinstance(model, str) else model,
            extractor_weights=made_absolute(self.extractor_weights),
            tiles_from=made_absolute(self.tiles_from),
        )

    def extractor_for(self, model: Any) -> str:
        """The extractor's name: the one asked for, else the one ``model`` was trained on."""
        name = self.extractor or getattr(model, "expected_extractor", None)
        if not name:
            raise ImiliaError(
                f"model {model.name} does not say which extractor made its features; choose "
                "one (imilia predict --extractor NAME, or the feature extractor in the panel)"
            )
        return str(name)

    def resolve(self, model: Any, extractor: Any | None = None) -> PredictSettings:
        """These settings with every default decided: the extractor (:meth:`extractor_for`),
        ``target_mpp`` and ``tile_px`` (asked, else the model's, else ``extractor``'s), and
        the model's sha256 and demo flag and the extractor's weights' sha256 as read.

        Without a loaded ``extractor`` (slides sent to dask workers) the extractor's own
        defaults stay None ("whatever it says") and its sha256 comes from the weights file
        (or the builtin extractor's digest), None when neither is known.
        """
        config = dict(getattr(model, "config", {}) or {})
        name = extractor.name if extractor is not None else self.extractor_for(model)
        target_mpp = self.target_mpp or config.get("mpp")
        tile_px = self.tile_px or config.get("tile_px")
        if extractor is not None:
            target_mpp = target_mpp or extractor.target_mpp
            tile_px = tile_px or extractor.tile_px
        return replace(
            self,
            extractor=name,
            target_mpp=None if target_mpp is None else float(target_mpp),
            tile_px=None if tile_px is None else int(tile_px),
            model_sha256=getattr(model, "sha256", None),
            model_is_demo=bool(config.get("demo", False)),
            extractor_sha256=_extractor_sha256(name, self.extractor_weights, extractor),
        )

    def record(self) -> dict[str, Any]:
        """The entries of ``slide.json`` these (resolved) settings decide."""
        return {
            "model_sha256": self.model_sha256,
            "model_is_demo": self.model_is_demo,
            "extractor": self.extractor,
            "extractor_sha256": self.extractor_sha256,
            "target_mpp": self.target_mpp,
            "tile_px": self.tile_px,
            "tiling": self.tiling,
            "protocol": self.protocol,
            "min_tissue_fraction": self.min_tissue_fraction,
            "tissue_params": self.tissue_params,
        }


def _extractor_sha256(name: str, weights: str | None, extractor: Any | None) -> str | None:
    if extractor is not None:
        return extractor.weights_sha256
    if weights:
        from napari_imilia.files import sha256_file

        return sha256_file(weights)
    if extractor_key(name) == "imilia-stain-stats":
        from napari_imilia.features.extractors.builtin import builtin_digest

        return builtin_digest()
    return None


def settings_from(settings: PredictSettings | None, keywords: dict[str, Any]) -> PredictSettings:
    """``settings``, or the settings the keyword arguments in ``keywords`` stand for (they
    are taken out of it); giving both is a ``TypeError``."""
    given = {name: keywords.pop(name) for name in SETTING_KEYWORDS if name in keywords}
    if settings is None:
        return PredictSettings.from_keywords(**given)
    asked = {name for name, value in given.items() if value is not None}
    if asked:
        raise TypeError(f"give settings= or {', '.join(sorted(asked))}, not both")
    return settings


def keyword_alias(value: Any, old_value: Any, old: str, new: str) -> Any:
    """``value`` of keyword ``new``, or the value given under its old name ``old`` (with a
    ``DeprecationWarning``); both is a ``TypeError``."""
    if old_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {new}= (or its old name {old}=), not both")
    warnings.warn(f"{old}= is the old name of {new}=", DeprecationWarning, stacklevel=3)
    return old_value


def tissue_settings(params: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """``params`` checked (:func:`check_tissue_params`) as sorted (name, value) pairs, without
    the automatic (None) and ``detect_tissue``'s default values: two ways of asking for the
    same mask give the same settings."""
    from napari_imilia.tiling.tissue import detect_tissue

    defaults = inspect.signature(detect_tissue).parameters
    asked = check_tissue_params(params)
    return tuple(
        sorted(
            (name, value)
            for name, value in asked.items()
            if value is not None and value != defaults[name].default
        )
    )


def check_tissue_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` for ``detect_tissue``, or ``ImiliaError`` naming an unknown or bad entry."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(TISSUE_PARAMS))
    if unknown:
        raise ImiliaError(
            f"unknown tissue parameter(s) {', '.join(unknown)}; known: {', '.join(TISSUE_PARAMS)}"
        )
    saturation = params.get("saturation_threshold")
    if saturation is not None and not 0.0 <= float(saturation) < 1.0:
        raise ImiliaError(
            f"tissue saturation threshold (--tissue-saturation) must be in [0, 1), got {saturation}"
        )
    for name, flag in (
        ("min_od", " (--tissue-min-od)"),
        ("min_tissue_area_um2", ""),
        ("fill_holes_um2", ""),
    ):
        if params.get(name) is not None and float(params[name]) < 0:
            raise ImiliaError(
                f"tissue parameter {name}{flag} must be 0 or more, got {params[name]}"
            )
    return params


def extractor_key(name: str) -> str:
    """``H0_mini``, ``bioptimus/h0-mini`` and ``h0-mini`` name the same extractor."""
    return name.strip().lower().rsplit("/", 1)[-1].replace("_", "-")


def check_model_fits_extractor(model: Any, extractor: Any) -> None:
    """Raise when the model's input dimension or expected extractor disagree with ``extractor``."""
    if model.in_dim != extractor.dim:
        raise ImiliaError(
            f"model {model.name} expects {model.in_dim}-d tile features "
            f"(extractor {model.expected_extractor or 'unknown'}) but extractor {extractor.name} "
            f"gives {extractor.dim}-d features; choose the extractor the model was trained on"
        )
    expected = model.expected_extractor
    if expected and extractor_key(expected) != extractor_key(extractor.name):
        raise ImiliaError(
            f"model {model.name} was trained on {expected} features, not {extractor.name}; "
            f"pass --extractor {expected}"
        )
