"""Training learns the synthetic structure, well beyond always guessing the commonest class."""

from __future__ import annotations

from retail_training.training import TrainedModel


def test_the_model_beats_the_majority_baseline_on_held_out_rows(trained: TrainedModel) -> None:
    assert trained.holdout_rows == 400
    assert trained.holdout_accuracy > trained.majority_accuracy + 0.15
    assert trained.holdout_log_loss < 1.0  # always answering 1/3 each scores ln 3 ≈ 1.10


def test_the_version_names_seed_rows_and_content(trained: TrainedModel) -> None:
    assert trained.version.startswith("s11-n2000-")
    assert 0 < trained.rounds <= 300
