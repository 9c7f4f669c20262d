"""The census of the viewer's slide: loaded, run, shown, picked (``ViewerState.census``).

:class:`CensusRunner` holds, for the session's slide, the finished census found in its
results folder (``results_root/<slide_id>/census``, as ``imilia cells --out RESULTS`` writes
it) as a :class:`~napari_imilia.interpret.census.CensusData`, the cell selection the density
layer shows, and the tile picked on the canvas with its cells. :meth:`CensusRunner.run`
makes the census with the viewer's inspection choices (``ViewerState.inspect_settings``) in
a napari ``thread_worker``, reporting :class:`~napari_imilia.progress.RunProgress`; cancel
keeps the finished parts, so running again goes on. The viewer link draws the layers from
the signals; the Tile inspector's census section shows and edits this state; neither keeps
its own copy.
"""

from __future__ import annotations

import threading
from typing import Any

from psygnal import Signal

from napari_imilia._napari.notify import notify
from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.census import PRESETS, CellSelection, CensusData, census_dir


class CensusRunner:
    """One viewer's census (see the module docstring).

    Signals: ``changed(CensusData or None)``, ``selection_changed(CellSelection)``,
    ``picked(tile_id, cells DataFrame)``, ``progress(RunProgress)``, ``status(text)``.
    """

    changed = Signal(object)
    selection_changed = Signal(object)
    picked = Signal(object, object)
    progress = Signal(object)
    status = Signal(str)

    def __init__(self, state: Any) -> None:
        self._state = state
        self.data: CensusData | None = None
        self.selection: CellSelection = PRESETS[0]
        self.picked_tile: str | None = None
        self.worker: Any = None
        self._cancel: threading.Event | None = None
        state.session_changed.connect(self._on_session_changed)
        state.blinding_changed.connect(self._on_blinding_changed)

    @property
    def running(self) -> bool:
        return self.worker is not None

    # ------------------------------------------------------------------ loading
    def folder(self) -> Any:
        """Where the session's census lives (None without a session)."""
        session = self._state.session
        return None if session is None else census_dir(session.results_root, session.slide_id)

    def reload(self) -> CensusData | None:
        """Load the session's finished census, if there is one and the reader may see it
        (none while a blinded study withholds the model), and tell the listeners."""
        folder = self.folder()
        data = None
        if self._state.model_hidden:  # a blinded reader: census evidence is AI output
            folder = None
        if folder is not None and (folder / "census.json").is_file():
            try:
                data = CensusData.load(folder)
            except ImiliaError as error:
                notify("warning", f"napari-imilia: the census in {folder} cannot be read: {error}")
        self.set_data(data)
        return data

    def set_data(self, data: CensusData | None) -> None:
        self.data, self.picked_tile = data, None
        self.changed.emit(data)

    def _on_blinding_changed(self, _session: Any) -> None:
        self.reload()

    def _on_session_changed(self, _session: Any) -> None:
        self.cancel()
        self.reload()

    # ------------------------------------------------------------------ selection, picking
    def select(self, selection: CellSelection) -> None:
        """Show ``selection``'s density (and only its cells) from now on."""
        if selection != self.selection:
            self.selection = selection
            self.selection_changed.emit(selection)

    def tile_at(self, x: float, y: float) -> str | None:
        """The census tile holding level-0 pixel (x, y), or None."""
        data = self.data
        if data is None:
            return None
        tiles = data.tiles
        inside = (
            (tiles["x"] <= x)
            & (x < tiles["x"] + tiles["width"])
            & (tiles["y"] <= y)
            & (y < tiles["y"] + tiles["height"])
        )
        hits = tiles["tile_id"][inside]
        return None if hits.empty else str(hits.iloc[0])

    def pick(self, tile_id: str) -> Any:
        """List ``tile_id``'s cells (``picked``) and inspect it when the slide is scored."""
        data = self.data
        if data is None:
            return None
        cells = data.cells(
            [
                "label",
                "class_name",
                "compartment",
                "area_um2",
                "probability",
                "centroid_x",
                "centroid_y",
            ],
            [tile_id],
        )
        self.picked_tile = tile_id
        self.picked.emit(tile_id, cells)
        session = self._state.session
        if session is not None and session.prediction is not None:
            if tile_id in set(session.tiles["tile_id"].astype(str)):
                session.select_tile(tile_id)
                self._state.inspections.inspect(tile_id)
            else:
                self.status.emit(f"tile {tile_id} is not one of the scored tiles: not inspected")
        return cells

    # ------------------------------------------------------------------ running
    def run(self, *, workers: int | None = None) -> None:
        """Make the session's census in a worker thread (see the module docstring)."""
        session = self._state.session
        if session is None:
            notify("info", "napari-imilia: open a slide before running its census")
            return
        if self.worker is not None:
            self.status.emit("a census is already running")
            return
        from napari.qt.threading import thread_worker

        from napari_imilia._napari.threads import track_worker
        from napari_imilia.interpret.census import CensusSettings

        try:
            settings = CensusSettings(inspect=self._state.inspect_settings.to_config())
        except ImiliaError as error:
            notify("error", f"napari-imilia: {error}")
            return
        self._cancel = cancel = threading.Event()
        worker = thread_worker(_census_steps, start_thread=False, ignore_errors=True)(
            session.slide.path, session.results_root, settings, workers, cancel
        )
        worker.yielded.connect(self.progress.emit)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        track_worker(worker)
        self.worker = worker
        self.status.emit(f"census of {session.slide_id} ({settings.inspect.cell_backend} cells)…")
        worker.start()

    def cancel(self) -> None:
        """Stop a running census between tile batches (its finished parts are kept)."""
        if self._cancel is not None:
            self._cancel.set()

    def _on_returned(self, result: Any) -> None:
        if self._state.model_hidden:  # a blinded reader: not even the counts
            self.status.emit("census finished: shown once you commit your grade")
        else:
            self.status.emit(f"census: {result.n_cells:,} cells in {result.n_tiles} tiles")
        self.reload()

    def _on_error(self, error: BaseException) -> None:
        message = f"napari-imilia: census: {error}"
        self.status.emit(message)
        notify("info" if self._cancel is not None and self._cancel.is_set() else "error", message)

    def _on_finished(self) -> None:
        self.worker = self._cancel = None


def _census_steps(slide_path: Any, out: Any, settings: Any, workers: Any, cancel: Any) -> Any:
    """Worker body: ``census_slide``, yielding its progress (a generator worker)."""
    import queue

    from napari_imilia.interpret.census import census_slide

    updates: queue.SimpleQueue = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = census_slide(
                slide_path, out, settings, workers=workers, progress=updates.put, cancel=cancel
            )
        except BaseException as error:  # handed to the worker's errored signal below
            outcome["error"] = error
        finally:
            updates.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while (update := updates.get()) is not None:
        yield update
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
