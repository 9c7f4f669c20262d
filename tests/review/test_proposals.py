"""Item-grade proposals calibrated on a reviewer's own grades, on generated data: grades
made from known census values give a high cross-validated kappa; shuffled grades a low one;
no proposal before the figure exists; proposals are never grades."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_imilia.review.evidence import ItemEvidence
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.grading import commit_grade
from napari_imilia.review.indices import CHRONIC, EOSINOPHILS, EROSION, ITEMS
from napari_imilia.review.proposals import (
    MIN_SLIDES,
    calibrate,
    cohort_proposals,
    cross_validated_kappa,
    fit_ordinal,
    kappa_text,
    loo_kappa,
)
from napari_imilia.review.reads import load_slide_reads
from support.census_tables import write_table_census


def _evidence(density: float) -> list[ItemEvidence]:
    """Every measured item at ``density`` cells/mm² (worst window 1.5x), erosion unmeasured."""
    return [
        ItemEvidence(i.key, i.name, note="not measured")
        if i.key == EROSION
        else ItemEvidence(i.key, i.name, slide=density, worst=1.5 * density)
        for i in ITEMS
    ]


def _grade_of(density: float) -> int:
    return int(np.searchsorted([200.0, 600.0, 1500.0], density))  # 0-3


def test_the_ordinal_model_recovers_known_grades():
    rng = np.random.default_rng(0)
    density = rng.uniform(20, 3000, 60)
    x = np.column_stack([np.log1p(density), np.log1p(1.5 * density)])
    y = np.array([_grade_of(d) for d in density])
    model = fit_ordinal(x, y)
    assert model.levels == (0, 1, 2, 3)
    assert np.all(np.diff(model.thresholds) > 0)
    assert (model.predict(x) == y).mean() >= 0.9
    assert np.allclose(model.probabilities(x).sum(axis=1), 1.0)
    assert loo_kappa(x, y, 3) >= 0.9
    shuffled = rng.permutation(y)
    assert loo_kappa(x, shuffled, 3) < 0.4
    # above LOO_MAX_SLIDES the figure is 10-fold (seeded: the same twice)
    kappa, scheme = cross_validated_kappa(x, y, 3)
    assert scheme == "10-fold" and kappa >= 0.9 and cross_validated_kappa(x, y, 3)[0] == kappa
    assert cross_validated_kappa(x, shuffled, 3)[0] < 0.4
    assert cross_validated_kappa(x[:20], y[:20], 3)[1] == "leave-one-out"


def test_proposals_come_with_their_kappa_and_never_for_graded_slides():
    rng = np.random.default_rng(1)
    densities = {f"s{i:02d}": float(d) for i, d in enumerate(rng.uniform(20, 3000, 24))}
    evidence = {s: _evidence(d) for s, d in densities.items()}
    graded = sorted(densities)[:16]
    grades = {s: {CHRONIC: _grade_of(densities[s])} for s in graded}
    result = calibrate(evidence, grades, "dr a")
    chronic = result.models[CHRONIC]
    assert chronic.n_slides == 16 and chronic.kappa is not None and chronic.kappa >= 0.8
    assert "leave-one-out, 16 slides" in kappa_text(chronic)
    proposed = {s for s, p in result.proposals.items() if CHRONIC in p}
    assert proposed == set(densities) - set(graded)
    right = [result.for_slide(s)[CHRONIC][0] == _grade_of(densities[s]) for s in proposed]
    assert np.mean(right) >= 0.75
    # the other items carry no grade: no model, no proposal; erosion is never measured
    assert result.models[EOSINOPHILS].model is None and "0 of 10" in result.models[EOSINOPHILS].why
    assert result.models[EROSION].why == "not measured"
    assert all(set(p) == {CHRONIC} for p in result.proposals.values())


def test_too_few_slides_or_one_level_give_no_model_and_no_proposal():
    evidence = {f"s{i}": _evidence(100.0 * (i + 1)) for i in range(MIN_SLIDES + 3)}
    few = {f"s{i}": {CHRONIC: i % 2} for i in range(MIN_SLIDES - 1)}
    result = calibrate(evidence, few, "dr a")
    assert result.models[CHRONIC].model is None and not result.proposals
    assert f"{MIN_SLIDES - 1} of {MIN_SLIDES} slides" in kappa_text(result.models[CHRONIC])
    flat = {f"s{i}": {CHRONIC: 1} for i in range(MIN_SLIDES + 1)}
    result = calibrate(evidence, flat, "dr a")
    assert (
        result.models[CHRONIC].model is None and "1 of 2 grade levels" in result.models[CHRONIC].why
    )
    assert not result.proposals


def test_cohort_proposals_read_the_reviewers_own_reads_and_censuses(tmp_path):
    results = tmp_path / "results"
    counts = list(range(1, 15))  # 14 slides, chronic infiltrate rising with the count
    for i, count in enumerate(counts):
        write_table_census(results, f"slide{i:02d}", count)
    for i in range(12):
        grade = SlideGrade(nancy=0, items={CHRONIC: int(counts[i] > 4) + int(counts[i] > 8)})
        commit_grade(results, f"slide{i:02d}", "dr a", grade)
    commit_grade(results, "slide12", "dr b", SlideGrade(nancy=1, items={CHRONIC: 0}))
    ids = [f"slide{i:02d}" for i in range(14)]
    result = cohort_proposals(results, ids, "dr a")
    model = result.models[CHRONIC]
    assert model.n_slides == 12 and model.levels == (0, 1, 2) and model.kappa > 0.8
    # dr b's grade is not dr a's: slide12 is proposed to dr a, and nothing is stored
    assert set(result.proposals) == {"slide12", "slide13"}
    assert result.for_slide("slide13")[CHRONIC][0] == 2
    assert load_slide_reads(results / "slide13", "slide13").reads == []
    assert not math.isnan(result.for_slide("slide12")[CHRONIC][1])
    assert cohort_proposals(results, ids, "dr c").proposals == {}


@pytest.mark.parametrize("n", [0, 1])
def test_calibrate_on_nothing(n):
    evidence = {f"s{i}": _evidence(10.0) for i in range(n)}
    result = calibrate(evidence, {}, "dr a")
    assert result.proposals == {}
