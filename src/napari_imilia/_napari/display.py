"""Show a slide in napari, or render the napari view to a PNG when there is no screen.

napari's image layers do not render under ``QT_QPA_PLATFORM=offscreen``, so without a display
a private virtual X server (``Xvfb``) is started for the screenshot. When neither a display
nor Xvfb exists, a plain thumbnail PNG is written instead. napari and Qt are imported inside
the functions that need them; checking whether Qt can start is done in a subprocess, because
a Qt platform plugin that cannot load aborts the process instead of raising.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from napari_imilia.errors import ImiliaError

#: Virtual screen for screenshots: width x height x depth.
XVFB_SCREEN = "1920x1200x24"
#: Seconds to wait for Xvfb to accept connections, and for the Qt probe.
XVFB_START_TIMEOUT_S = 20.0
QT_PROBE_TIMEOUT_S = 30.0
#: Seconds a screenshot child process may take (napari start-up is several seconds).
SCREENSHOT_TIMEOUT_S = 180.0
#: napari window size for screenshots (width, height) in screen pixels.
WINDOW_SIZE_PX = (1600, 1000)

RenderMode = Literal["napari", "thumbnail"]


@dataclass(frozen=True)
class Rendered:
    """A written view image: its path, and how it was made (napari window or thumbnail)."""

    path: Path
    mode: RenderMode
    note: str


def display_available() -> bool:
    """True when ``DISPLAY`` or ``WAYLAND_DISPLAY`` is set (a screen may be there)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def qt_can_start(env: dict[str, str] | None = None) -> bool:
    """True if a Qt application starts in a child process with ``env`` (default: ours)."""
    probe = "from qtpy.QtWidgets import QApplication; QApplication([]).processEvents()"
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env=env,
            capture_output=True,
            timeout=QT_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextlib.contextmanager
def private_xvfb(screen: str = XVFB_SCREEN) -> Iterator[str]:
    """Run a private ``Xvfb`` on a free display for the duration of the block.

    Yields the display name (e.g. ``":3"``) to put in a child process's ``DISPLAY``; this
    process's environment is left alone. Raises ``ImiliaError`` if Xvfb is missing or does not
    start.
    """
    binary = shutil.which("Xvfb")
    if binary is None:
        raise ImiliaError("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    command = [binary, "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=log
        )
        os.close(write_fd)
        try:
            yield f":{_read_display_number(read_fd, process, log)}"
        finally:
            os.close(read_fd)
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _read_display_number(read_fd: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> int:
    """Wait for Xvfb to write its display number to ``read_fd`` (it does so when ready)."""
    selector = selectors.DefaultSelector()
    selector.register(read_fd, selectors.EVENT_READ)
    text = b""
    try:
        while not text.endswith(b"\n"):
            if not selector.select(timeout=XVFB_START_TIMEOUT_S):
                raise ImiliaError(f"Xvfb did not start within {XVFB_START_TIMEOUT_S:.0f} s")
            chunk = os.read(read_fd, 64)
            if not chunk:
                process.wait()
                log.seek(0)
                stderr = log.read().decode(errors="replace").strip()
                raise ImiliaError(f"Xvfb exited before it was ready: {stderr[-300:]}")
            text += chunk
    finally:
        selector.close()
    return int(text.strip())


def prefer_qt6() -> None:
    """Make qtpy (and so napari) use PyQt6 when it is installed and no binding was chosen
    (``QT_API`` unset, no Qt imported yet): napari 0.9 deprecates PyQt5 with a toast."""
    import importlib.util

    chosen = os.environ.get("QT_API") or any(
        name in sys.modules for name in ("PyQt5", "PyQt6", "PySide2", "PySide6")
    )
    if not chosen and importlib.util.find_spec("PyQt6") is not None:
        os.environ["QT_API"] = "pyqt6"


def open_viewer(slide_path: Path, *, show: bool = True, results_root: Path | None = None) -> Any:
    """A napari viewer with the slide opened through this plugin's reader; with
    ``results_root``, ready for review (session, heatmap and docks: ``open_review_viewer``)."""
    prefer_qt6()
    import napari

    if results_root is not None:
        from napari_imilia._napari.launch import open_review_viewer

        return open_review_viewer(slide_path, results_root, show=show)
    viewer = napari.Viewer(title=f"napari-imilia: {slide_path.name}", show=show)
    viewer.open(str(slide_path), plugin="napari-imilia")
    return viewer


def view_slide(slide_path: Path, results_root: Path | None = None) -> None:
    """Open napari on the slide (ready for review with ``results_root``) and run its event
    loop until the window is closed."""
    import napari

    open_viewer(slide_path, results_root=results_root)
    napari.run()


def screenshot_view(slide_path: Path, out_png: Path, results_root: Path | None = None) -> Path:
    """Render the napari window showing the whole slide, with a scale bar, to ``out_png``
    (with ``results_root``: the review viewer, heatmap and docks included).

    Runs in this process and needs a display Qt can use; notifications (e.g. napari's PyQt5
    notice) are closed first so they do not cover the view.
    """
    viewer = open_viewer(slide_path, show=True, results_root=results_root)
    try:
        from napari_imilia._napari.compat import main_window, scale_bar

        main_window(viewer).resize(*WINDOW_SIZE_PX)
        scale_bar(viewer).visible = True
        _process_qt_events()  # lay the resized window out first: reset_view fits the canvas
        viewer.reset_view()
        _close_notifications()
        _process_qt_events()
        out_png.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out_png), canvas_only=False, flash=False)
    finally:
        viewer.close()
    return out_png


def _close_notifications() -> None:
    """Close napari's toast notifications so they do not cover the screenshot."""
    with contextlib.suppress(ImportError, AttributeError):
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for notification in list(NapariQtNotification._instances):
            notification.close()


def _process_qt_events(rounds: int = 5) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    for _ in range(rounds):
        if app is not None:
            app.processEvents()


def write_thumbnail_png(slide_path: Path, out_png: Path, max_px: int = 1024) -> Path:
    """Write the slide's thumbnail (longer side ``max_px``) as a PNG; no napari involved."""
    from PIL import Image

    from napari_imilia.slide import open_slide

    with open_slide(slide_path) as slide:
        image = slide.thumbnail(max_px)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out_png)
    return out_png


def screenshot_in_child(
    slide_path: Path, out_png: Path, env: dict[str, str], results_root: Path | None = None
) -> str | None:
    """Run :func:`screenshot_view` in a child Python with ``env``; ``None`` or why it failed.

    A child keeps Qt (and its X connection) out of this process, so a private Xvfb can be
    stopped afterwards and a Qt that cannot start cannot abort the caller.
    """
    command = [sys.executable, "-m", __name__, str(slide_path), str(out_png)]
    if results_root is not None:
        command.append(str(results_root))
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=SCREENSHOT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"napari did not finish the screenshot within {SCREENSHOT_TIMEOUT_S:.0f} s"
    if result.returncode != 0 or not out_png.is_file():
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        return f"napari screenshot failed (exit {result.returncode}): {tail[-400:]}"
    return None


def render_view(slide_path: Path, out_png: Path, results_root: Path | None = None) -> Rendered:
    """Best available picture of the slide in napari (the review viewer with
    ``results_root``), written to ``out_png``.

    Tries a private Xvfb (invisible), then the current display, then writes the slide
    thumbnail; ``Rendered.note`` says which, and why a napari view was not possible.
    """
    slide_path, out_png = Path(slide_path), Path(out_png)
    problems: list[str] = []
    if shutil.which("Xvfb") is not None:
        try:
            with private_xvfb() as display:
                env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
                env.pop("WAYLAND_DISPLAY", None)
                problem = screenshot_in_child(slide_path, out_png, env, results_root)
        except ImiliaError as error:
            problem = str(error)
        if problem is None:
            return Rendered(out_png, "napari", "napari window rendered on a private Xvfb")
        problems.append(problem)
    else:
        problems.append("Xvfb is not installed")
    if display_available():
        problem = screenshot_in_child(slide_path, out_png, dict(os.environ), results_root)
        if problem is None:
            return Rendered(out_png, "napari", "napari window rendered on the current display")
        problems.append(problem)
    else:
        problems.append("no display (DISPLAY/WAYLAND_DISPLAY unset)")
    write_thumbnail_png(slide_path, out_png)
    return Rendered(
        out_png, "thumbnail", f"wrote the slide thumbnail, not a napari view: {'; '.join(problems)}"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m napari_imilia._napari.display SLIDE OUT_PNG [RESULTS_ROOT]``: screenshot
    on ``$DISPLAY``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(
            "usage: python -m napari_imilia._napari.display SLIDE OUT_PNG [RESULTS_ROOT]",
            file=sys.stderr,
        )
        return 2
    results_root = Path(args[2]) if len(args) == 3 else None
    screenshot_view(Path(args[0]), Path(args[1]), results_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
