"""``imilia score``: MIL on feature files, slide scores and tile scores.

``imilia score --model M --features DIR --out OUT`` scores every ``DIR/*.h5`` with a checkpoint,
a folder of checkpoints or several ``--model`` files (an ensemble) and writes
``OUT/scores.csv`` (slide_id, score = probability, logit, n_tiles), ``OUT/tiles/<slide_id>.csv``
(tile_id ``x_y`` as in predict's tiles.csv, x, y, score[, attention]; x, y = level-0
top-left pixels) and ``OUT/score_info.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_imilia._cli.paths import user_path
from napari_imilia.errors import ImiliaError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score feature files with a MIL model (slide scores + tile scores)",
        description=(
            "Score every DIR/*.h5 feature file with a MIL checkpoint (or a folder of them, an "
            "ensemble) and write OUT/scores.csv and OUT/tiles/<slide_id>.csv."
        ),
    )
    parser.add_argument(
        "--model",
        type=user_path,
        required=True,
        action="append",
        help="checkpoint file or folder; repeat to form an ensemble",
    )
    parser.add_argument(
        "--features", type=user_path, required=True, help="folder of <slide_id>.h5 files"
    )
    parser.add_argument("--out", type=user_path, required=True, help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--pad-to-tiles",
        type=int,
        default=None,
        metavar="N",
        help="IMILIA's protocol: cut/zero-pad every bag to N rows, no mask (IMILIA: 10000)",
    )
    parser.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from napari_imilia import __version__
    from napari_imilia.export.tables import spreadsheet_csv
    from napari_imilia.files import write_text_atomic
    from napari_imilia.mil import load_model
    from napari_imilia.trust.paths import check_writable_folder

    features_dir, out_dir = Path(args.features), Path(args.out)
    check_writable_folder(out_dir)
    if not features_dir.is_dir():
        raise ImiliaError(f"features folder not found: {features_dir}")
    files = sorted(features_dir.glob("*.h5"))
    if not files:
        raise ImiliaError(f"no <slide_id>.h5 feature files in {features_dir}")
    sources = args.model[0] if len(args.model) == 1 else args.model
    model = load_model(sources, device=args.device, pad_to_tiles=args.pad_to_tiles)
    print(f"model {model.name} (sha256 {model.sha256[:12]}…) on {model.device}")
    rows = [_score_file(model, path, out_dir) for path in files]
    write_text_atomic(out_dir / "scores.csv", spreadsheet_csv(pd.DataFrame(rows)))
    info = {
        "model": model.name,
        "model_sha256": model.sha256,
        "model_is_demo": bool(model.config.get("demo", False)),
        "architecture": model.architecture,
        "n_members": len(model.members),
        "pad_to_tiles": model.pad_to_tiles,
        "features_dir": str(features_dir.resolve()),
        "n_slides": len(rows),
        "software": f"napari-imilia {__version__}",
    }
    write_text_atomic(out_dir / "score_info.json", json.dumps(info, indent=2) + "\n")
    print(f"wrote {out_dir / 'scores.csv'} and {len(rows)} tile table(s) in {out_dir / 'tiles'}")
    return 0


def _score_file(model: Any, path: Path, out_dir: Path) -> dict[str, Any]:
    """Score one feature file, write ``OUT/tiles/<slide_id>.csv``; its ``scores.csv`` row."""
    import numpy as np
    import pandas as pd

    from napari_imilia.features.cache import read_features
    from napari_imilia.files import write_text_atomic
    from napari_imilia.trust.paths import path_inside, safe_name

    bag = read_features(path)
    prediction = model.predict(bag.features, extractor=bag.attrs.get("extractor"))
    tiles = pd.DataFrame(
        {
            "tile_id": [f"{x}_{y}" for x, y in bag.coords.tolist()],
            "x": bag.coords[:, 0],
            "y": bag.coords[:, 1],
            "score": prediction.tile_scores.astype(np.float64),
        }
    )
    if prediction.attention is not None:
        tiles["attention"] = prediction.attention.astype(np.float64)
    slide_id = safe_name(path.stem)
    write_text_atomic(path_inside(out_dir, "tiles", f"{slide_id}.csv"), tiles.to_csv(index=False))
    print(f"{slide_id}: score {prediction.probability:.4f} ({bag.n_tiles} tiles)")
    return {
        "slide_id": slide_id,
        "score": prediction.probability,
        "logit": prediction.logit,
        "n_tiles": bag.n_tiles,
    }
