"""The label-free gate's figures and decisions, on hand-made outputs."""

from __future__ import annotations

import numpy as np

from models.agreement import AgreementGate, agreement

REFERENCE = {"probs": np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]), "score": np.array([[0.9], [0.2]])}


def test_figures_take_the_worst_output():
    candidate = {"probs": np.array([[0.65, 0.25, 0.1], [0.1, 0.3, 0.6]]), "score": np.array([[0.4], [0.2]])}
    figures = agreement(REFERENCE, candidate)
    assert figures["rows"] == 2
    assert np.isclose(figures["max_abs_error"], 0.5) and np.isclose(figures["mean_abs_error"], 0.25)
    assert figures["top1_agreement"] == 0.5  # the score crossed 0.5 on one of two rows


def test_classifiers_are_gated_on_top1_others_on_errors():
    candidate = {"probs": REFERENCE["probs"] + 0.04, "score": REFERENCE["score"]}
    figures = agreement(REFERENCE, candidate)
    assert AgreementGate(classify=True, min_top1=1.0).refusal(figures) is None
    assert AgreementGate(classify=False, max_abs_error=0.05, max_mean_abs_error=0.05).refusal(figures) is None
    refused = AgreementGate(classify=False, max_abs_error=0.01).refusal(figures)
    assert refused.startswith("max abs error 0.04") and "2 held-out rows" in refused
    assert "mean abs error" in AgreementGate(classify=False, max_mean_abs_error=0.001).refusal(figures)


def test_nan_outputs_are_refused_and_recorded_as_null():
    candidate = {"probs": np.full((2, 3), np.nan), "score": REFERENCE["score"]}
    figures = agreement(REFERENCE, candidate)
    assert figures["max_abs_error"] is None and figures["mean_abs_error"] is None
    assert "NaN" in AgreementGate(classify=False).refusal(figures)
    assert AgreementGate(classify=True).refusal(figures) is not None
