"""Cross-validated training of MIL heads on tile-feature bags, deterministic under a seed.

``train_cross_validation`` splits the slides with stratified K-fold (sklearn
``StratifiedKFold(shuffle=True, random_state=seed)``), trains one model per fold on the other
folds and scores the held-out slides (ROC-AUC and balanced accuracy at probability 0.5), then
trains a final model on every slide with the same settings. Training is Adam on a
class-balanced binary cross-entropy (``pos_weight = n_negative / n_positive``) over
zero-padded mini-batches of bags with a padding mask, for a fixed number of epochs.

Determinism: each fit runs inside ``torch.random.fork_rng`` seeded from ``seed`` (and the fold
index), with deterministic algorithms on, mini-batch order drawn from a seeded NumPy generator
and, by default, one CPU thread (``threads=1``: float sums then do not depend on the machine's
core count, and MIL heads are small enough that one thread is as fast on a busy machine). The
same data, settings and seed give the same metrics and weights; the CPU is the default device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from napari_imilia.errors import DataError
from napari_imilia.mil.base import MILModel, pad_bags
from napari_imilia.mil.dataset import check_class_counts
from napari_imilia.mil.registry import create_model

Log = Callable[[str], None]


@dataclass
class FoldMetrics:
    """Held-out performance of one cross-validation fold."""

    fold: int
    n_train: int
    n_test: int
    roc_auc: float
    balanced_accuracy: float
    test_slides: list[str] = field(default_factory=list)


@dataclass
class CVResult:
    """Per-fold and mean metrics, out-of-fold probabilities and the final all-data model."""

    architecture: str
    in_dim: int
    hparams: dict[str, Any]
    settings: dict[str, Any]
    folds: list[FoldMetrics]
    slide_ids: list[str]
    labels: np.ndarray
    oof_probability: np.ndarray
    final_model: MILModel | None

    @property
    def mean_roc_auc(self) -> float:
        return float(np.mean([f.roc_auc for f in self.folds]))

    @property
    def mean_balanced_accuracy(self) -> float:
        return float(np.mean([f.balanced_accuracy for f in self.folds]))

    @property
    def pooled_roc_auc(self) -> float:
        """ROC-AUC of all out-of-fold probabilities together."""
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(self.labels, self.oof_probability))

    def metrics(self) -> dict[str, Any]:
        """A JSON-able record (no dates): identical for identical runs."""
        return {
            "architecture": self.architecture,
            "in_dim": self.in_dim,
            "hparams": self.hparams,
            "settings": self.settings,
            "n_slides": len(self.slide_ids),
            "n_positive": int(self.labels.sum()),
            "mean_roc_auc": self.mean_roc_auc,
            "std_roc_auc": float(np.std([f.roc_auc for f in self.folds])),
            "mean_balanced_accuracy": self.mean_balanced_accuracy,
            "pooled_oof_roc_auc": self.pooled_roc_auc,
            "folds": [asdict(f) for f in self.folds],
            "oof": [
                {"slide_id": s, "label": int(y), "probability": float(p)}
                for s, y, p in zip(self.slide_ids, self.labels, self.oof_probability, strict=True)
            ],
        }


@contextlib.contextmanager
def seeded(seed: int, device: torch.device, threads: int | None = None) -> Iterator[None]:
    """Seed torch in a forked RNG state, deterministic algorithms, ``threads`` CPU threads.

    Everything (global RNG, deterministic flag, thread count) is restored on exit.
    """
    devices = [device] if device.type == "cuda" else []
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        if threads is not None:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
            if threads is not None:
                torch.set_num_threads(previous_threads)


def _as_tensors(bags: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    tensors = []
    for i, bag in enumerate(bags):
        array = np.asarray(bag, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] < 1:
            raise DataError(f"bag {i} must be N x D with N >= 1 tiles, got shape {array.shape}")
        tensors.append(torch.from_numpy(np.ascontiguousarray(array)).to(device))
    dims = {int(t.shape[1]) for t in tensors}
    if len(dims) != 1:
        raise DataError(f"bags have different feature dimensions {sorted(dims)}")
    return tensors


def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise DataError("labels must be a 1-d sequence of 0/1 values")
    return y.astype(np.int64)


@dataclass(frozen=True)
class _FitSettings:
    """How every model of a run is trained (all but the seed and the slides)."""

    arch: str
    hparams: dict[str, Any]
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    device: torch.device
    threads: int | None


def train_model(
    bags: Sequence[np.ndarray] | list[torch.Tensor],
    labels: Sequence[int] | np.ndarray,
    arch: str = "imilia-chowder",
    *,
    hparams: Mapping[str, Any] | None = None,
    seed: int = 0,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
) -> MILModel:
    """Train one ``arch`` model on all the given bags; returns it in eval mode."""
    device = torch.device(device)
    tensors = bags if bags and isinstance(bags[0], torch.Tensor) else _as_tensors(bags, device)
    y = _as_labels(labels)
    if len(tensors) != len(y):
        raise DataError(f"{len(tensors)} bags but {len(y)} labels")
    fit = _FitSettings(
        arch, dict(hparams or {}), epochs, lr, weight_decay, batch_size, device, threads
    )
    return _fit(tensors, y, np.arange(len(y)), seed, fit)


def _fit(
    bags: list[torch.Tensor], y: np.ndarray, index: np.ndarray, seed: int, fit: _FitSettings
) -> MILModel:
    """A model trained on the bags ``index`` (Adam, class-balanced BCE), in eval mode."""
    n_pos = int(y[index].sum())
    n_neg = len(index) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError("training needs slides of both classes (label 0 and label 1)")
    device = fit.device
    with seeded(seed, device, fit.threads):
        model = create_model(fit.arch, int(bags[0].shape[1]), **fit.hparams).to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
        pos_weight = torch.tensor(n_neg / n_pos, dtype=torch.float32, device=device)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        targets = torch.from_numpy(y.astype(np.float32)).to(device)
        order_rng = np.random.default_rng(seed)
        batch_size = int(fit.batch_size)
        model.train()
        for _ in range(int(fit.epochs)):
            order = order_rng.permutation(index)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                x, mask = pad_bags([bags[i] for i in batch])
                out = model(x, mask)
                batch_targets = targets[torch.from_numpy(batch).to(device)]
                loss = model.training_loss(out, mask, batch_targets, loss_fn)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        model.eval()
    return model


def _predict_probabilities(model: MILModel, bags: list[torch.Tensor], index: np.ndarray):
    with torch.no_grad():
        logits = [float(model(bags[i]).logit.float()) for i in index]
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def _checked_labels(
    bags: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    slide_ids: Sequence[str] | None,
    folds: int,
) -> tuple[np.ndarray, list[str]]:
    """0/1 labels and slide ids (default: positions), or ``DataError`` for unusable input."""
    y = _as_labels(labels)
    if len(bags) != len(y):
        raise DataError(f"{len(bags)} bags but {len(y)} labels")
    ids = [str(s) for s in slide_ids] if slide_ids is not None else [str(i) for i in range(len(y))]
    if len(ids) != len(y):
        raise DataError(f"{len(ids)} slide ids but {len(y)} labels")
    if int(folds) < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}")
    check_class_counts(y, int(folds), "labels")
    return y, ids


def _settings_record(folds: int, seed: int, fit: _FitSettings) -> dict[str, Any]:
    """``CVResult.settings``: how the models were trained, JSON-ready."""
    return {
        "folds": int(folds),
        "seed": int(seed),
        "epochs": int(fit.epochs),
        "lr": float(fit.lr),
        "weight_decay": float(fit.weight_decay),
        "batch_size": int(fit.batch_size),
        "threads": fit.threads,
        "loss": "class-balanced BCE (pos_weight = n_neg / n_pos)",
        "optimiser": "Adam",
        "splitter": f"StratifiedKFold(n_splits={int(folds)}, shuffle=True, random_state={seed})",
    }


def _held_out_fold(
    tensors: list[torch.Tensor],
    y: np.ndarray,
    ids: list[str],
    fold: int,
    split: tuple[np.ndarray, np.ndarray],
    seed: int,
    fit: _FitSettings,
) -> tuple[FoldMetrics, np.ndarray]:
    """Train on ``split``'s first part (seed ``seed * 1000 + fold + 1``), score the second:
    the fold's metrics and the held-out probabilities."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    train_idx, test_idx = split
    model = _fit(tensors, y, train_idx, int(seed) * 1000 + fold + 1, fit)
    with seeded(0, fit.device, fit.threads):
        prob = _predict_probabilities(model, tensors, test_idx)
    metrics = FoldMetrics(
        fold=fold,
        n_train=len(train_idx),
        n_test=len(test_idx),
        roc_auc=float(roc_auc_score(y[test_idx], prob)),
        balanced_accuracy=float(balanced_accuracy_score(y[test_idx], prob >= 0.5)),
        test_slides=[ids[i] for i in test_idx],
    )
    return metrics, prob


def train_cross_validation(
    bags: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    arch: str = "imilia-chowder",
    *,
    folds: int = 5,
    seed: int = 0,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    hparams: Mapping[str, Any] | None = None,
    slide_ids: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
    final_model: bool = True,
    log: Log | None = None,
) -> CVResult:
    """Stratified K-fold cross-validation of ``arch``, then a final model on all slides.

    ``bags``: one ``N_i x D`` float array per slide; ``labels``: 0/1 per slide; ``threads``:
    CPU threads while training (1 by default, see the module docstring; ``None`` keeps torch's
    setting). Raises ``DataError`` for a single class or fewer slides of a class than ``folds``.
    """
    from sklearn.model_selection import StratifiedKFold

    device = torch.device(device)
    y, ids = _checked_labels(bags, labels, slide_ids, folds)
    tensors = _as_tensors(bags, device)
    fit = _FitSettings(
        arch, dict(hparams or {}), epochs, lr, weight_decay, batch_size, device, threads
    )
    with seeded(int(seed), device):  # validates arch + hparams without touching global RNG
        arch_hparams = create_model(arch, int(tensors[0].shape[1]), **fit.hparams).hparams
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed))
    oof = np.full(len(y), np.nan)
    fold_metrics: list[FoldMetrics] = []
    for fold, split in enumerate(splitter.split(np.zeros(len(y)), y)):
        metrics, oof[split[1]] = _held_out_fold(tensors, y, ids, fold, split, seed, fit)
        fold_metrics.append(metrics)
        if log:
            log(
                f"fold {fold}: ROC-AUC {metrics.roc_auc:.3f}, balanced accuracy "
                f"{metrics.balanced_accuracy:.3f} ({metrics.n_test} held-out slides)"
            )
    final = _fit(tensors, y, np.arange(len(y)), int(seed) * 1000, fit) if final_model else None
    return CVResult(
        architecture=arch,
        in_dim=int(tensors[0].shape[1]),
        hparams=arch_hparams,
        settings=_settings_record(folds, seed, fit),
        folds=fold_metrics,
        slide_ids=ids,
        labels=y,
        oof_probability=oof,
        final_model=None if final is None else final.cpu(),
    )
