"""Tile inspection for one viewer, whatever docks are open: the ``I`` key and the Tile
inspector dock both ask :class:`InspectionRunner` (``ViewerState.inspections``).

A request names a tile of the state's session (default: the selected one). An inspection the
session already cached with the same choices is shown at once; otherwise
``napari_imilia.interpret`` runs in a napari ``thread_worker`` with the state's choices
(``ViewerState.inspect_settings``) and the tools the state has loaded
(``ModelCache.inspect_tools``: cell backend, epithelium method, EpiSeg probe), one tile at a
time: a request made meanwhile waits, and only the latest one waiting runs next. Results go
into the session's bounded cache (``store_inspection``). ``shown(inspection or None)`` tells
the viewer link (which draws the masks) and the dock (which lists the markers) what to show;
``status(text)`` says what is going on. Problems become notifications.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from psygnal import Signal

from napari_imilia._napari.notify import notify
from napari_imilia.errors import ImiliaError


def inspect_with_models(models: Any, slide: Any, row: dict[str, Any], config: Any) -> Any:
    """Worker body: the tools of ``config`` from ``models`` (loaded if needed), then one
    tile's ``TileInspection``."""
    return models.inspect_tools(config, slide).inspect(slide, row)


class InspectionRunner:
    """The viewer's tile inspections: the one shown (``current``), the one running
    (``worker``), the one wanted next (see the module docstring)."""

    shown = Signal(object)
    status = Signal(str)

    def __init__(self, state: Any) -> None:
        self._state = state
        self._session: Any = None
        self.current: Any = None
        self.worker: Any = None
        self._wanted: str | None = None
        self._running: str | None = None
        state.session_changed.connect(self._on_session_changed)

    @property
    def running_tile(self) -> str | None:
        return self._running

    # ------------------------------------------------------------------ requests
    def inspect(self, tile_id: str | None = None) -> None:
        """Show the inspection of ``tile_id`` (default: the selected tile), from the session's
        cache when it was made with the current choices, else computed in a worker thread."""
        session = self._state.session
        if session is None or session.prediction is None:
            notify("info", "napari-imilia: open a slide and score it before inspecting tiles")
            return
        tile_id = tile_id or session.selected_tile_id
        if tile_id is None:
            notify("info", "napari-imilia: select a tile first (click it, or use Top tiles)")
            return
        try:
            config = self._state.inspect_settings.to_config()
        except ImiliaError as error:
            notify("error", f"napari-imilia: {error}")
            return
        self._wanted = str(tile_id)
        cached = session.cached_inspection(tile_id)
        if cached is not None and cached.config == config:
            self._show(cached)
        elif self.worker is None:
            self._start(session, str(tile_id), config)
        else:
            self.status.emit(f"tile {tile_id} queued after {self._running}")

    def clear(self) -> None:
        """Show nothing (the masks go; the session's cache stays)."""
        self._wanted = None
        self.current = None
        self.shown.emit(None)

    # ------------------------------------------------------------------ the worker
    def _start(self, session: Any, tile_id: str, config: Any) -> None:
        from napari.qt.threading import thread_worker

        from napari_imilia._napari.threads import track_worker

        row = session.tile_row(tile_id).to_dict()
        # errors are shown by _on_error, not re-raised in the main thread
        worker = thread_worker(inspect_with_models, start_thread=False, ignore_errors=True)(
            self._state.models, session.slide, row, config
        )
        worker.returned.connect(partial(self._on_returned, session))
        worker.errored.connect(partial(self._on_error, tile_id))
        worker.finished.connect(self._on_finished)
        track_worker(worker)
        self.worker, self._running = worker, tile_id
        self.status.emit(f"inspecting tile {tile_id} ({config.cell_backend} cells)…")
        worker.start()

    def _on_returned(self, session: Any, inspection: Any) -> None:
        if session is not self._state.session or session.prediction is None:
            return
        session.store_inspection(inspection.tile_id, inspection)
        if inspection.tile_id == self._wanted:
            self._show(inspection)

    def _on_error(self, tile_id: str, error: BaseException) -> None:
        if isinstance(error, ImiliaError):
            message = f"napari-imilia: cannot inspect tile {tile_id}: {error}"
        else:
            message = (
                f"napari-imilia: inspecting tile {tile_id} failed ({type(error).__name__}: {error})"
            )
        self.status.emit(message)
        if self._wanted == tile_id:
            self._wanted = None
        notify("error", message)

    def _on_finished(self) -> None:
        self.worker, finished = None, self._running
        self._running = None
        wanted = self._wanted
        if wanted is not None and wanted != finished:
            self.inspect(wanted)

    def _show(self, inspection: Any) -> None:
        self.current = inspection
        self.shown.emit(inspection)
        self.status.emit(f"tile {inspection.tile_id} inspected")

    # ------------------------------------------------------------------ the session
    def _on_session_changed(self, session: Any) -> None:
        if self._session is not None:
            self._session.prediction_changed.disconnect(self._on_prediction_changed)
        self._session = session
        if session is not None:
            session.prediction_changed.connect(self._on_prediction_changed)
        self.clear()

    def _on_prediction_changed(self, _result: Any) -> None:
        self.clear()
