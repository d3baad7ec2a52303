"""Bootstrap intervals and paired differences on cases small enough to work out by hand."""

from __future__ import annotations

import pytest

from searchrl.eval.paired import ALL_DATASETS, bootstrap_mean, compare_arms, comparison_markdown, paired_difference


def test_constant_scores_have_a_zero_width_interval() -> None:
    iv = bootstrap_mean([1, 1, 1, 1], n_boot=200)
    assert (iv.mean, iv.low, iv.high) == (1.0, 1.0, 1.0)
    assert iv.excludes_zero()


def test_bootstrap_interval_of_one_success_in_four() -> None:
    """Resampling [0, 0, 0, 1]: the count of ones is Binomial(4, 1/4); P(0 ones) = 0.316 > 0.025, so the
    2.5 % quantile is 0; P(>= 3 ones) = 0.0508 > 0.025 and P(4 ones) = 0.0039 < 0.025, so the 97.5 %
    quantile is 3/4. 20,000 resamples put the empirical quantiles well inside those masses."""
    iv = bootstrap_mean([0, 0, 0, 1], n_boot=20_000, seed=1)
    assert (iv.mean, iv.low, iv.high) == (0.25, 0.0, 0.75)


def test_bootstrap_interval_of_two_values() -> None:
    """[0, 1]: resampled means 0, 1/2, 1 with probability 1/4, 1/2, 1/4; the 95 % interval is [0, 1]."""
    iv = bootstrap_mean([0, 1], n_boot=5000, seed=0)
    assert (iv.mean, iv.low, iv.high) == (0.5, 0.0, 1.0)
    assert not iv.excludes_zero()


def test_bootstrap_is_seeded() -> None:
    values = [0.13, 0.5, 0.77, 0.02, 0.91, 0.35, 0.6, 0.48, 0.29, 0.84]  # F1-like: quantiles are not on a grid
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    assert bootstrap_mean(values, seed=3) != bootstrap_mean(values, seed=4)


def test_paired_difference_counts_fixed_and_broken() -> None:
    before = [0, 0, 1, 1, 0]
    after = [1, 1, 1, 0, 0]
    diff, fixed, broken = paired_difference(before, after, n_boot=2000)
    assert diff.mean == pytest.approx(0.2)
    assert (fixed, broken) == (2.0, 1.0)
    assert diff.low < 0 < diff.high  # 5 questions: far too few to tell


def test_pairing_is_tighter_than_two_separate_intervals() -> None:
    """The same questions, where the second arm fixes exactly 1 in 10 and breaks none: each question's
    difference is 0 or +0.1-ish, so the paired interval excludes 0, while the two arms' own intervals
    overlap widely (the questions vary much more than the arms do)."""
    before = [0, 1] * 50
    after = [1 if i % 10 == 0 else v for i, v in enumerate(before)]
    diff, fixed, broken = paired_difference(before, after, n_boot=4000)
    assert (fixed, broken) == (10.0, 0.0)
    assert diff.mean == pytest.approx(0.1)
    assert diff.low > 0  # every resample of questions has a difference >= 0; most have > 0
    a, b = bootstrap_mean(before, n_boot=4000), bootstrap_mean(after, n_boot=4000)
    assert a.high > b.low


def test_runs_are_resampled_too() -> None:
    """Two runs that disagree completely (one scores 1 everywhere, the other 0): a question-only
    bootstrap would be [0.5, 0.5]; resampling runs gives the full [0, 1]."""
    iv = bootstrap_mean([[1, 1, 1, 1], [0, 0, 0, 0]], n_boot=4000)
    assert (iv.mean, iv.low, iv.high) == (0.5, 0.0, 1.0)
    # fixed/broken with several runs: averaged over every pair of runs (2 runs after x 1 run before)
    _, fixed, broken = paired_difference([[0, 0, 1, 1]], [[1, 1, 1, 1], [0, 0, 0, 0]], n_boot=100)
    assert (fixed, broken) == (1.0, 1.0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="same questions"):
        paired_difference([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_mean([1], n_boot=0)


def _rows(scores: dict[str, tuple[str, float]]) -> list[dict[str, object]]:
    return [{"id": i, "dataset": "w", "group": g, "em": s} for i, (g, s) in scores.items()]


def test_compare_arms_groups_pairs_and_aligns_by_id() -> None:
    base = _rows({"a": ("1hop", 0), "b": ("1hop", 1), "c": ("2hop", 0), "d": ("2hop", 0), "x": ("2hop", 1)})
    # the RL arm, evaluated in another order and without question "x": only shared ids are compared
    rl = _rows({"d": ("2hop", 1), "c": ("2hop", 1), "b": ("1hop", 0), "a": ("1hop", 0)})
    scores, paired = compare_arms({"sft": [base], "rl": [rl]}, n_boot=500)
    by = {(p.group, p.arm): p for p in paired}
    assert by[("2hop", "rl")].fixed == 2 and by[("2hop", "rl")].broken == 0
    assert by[("1hop", "rl")].fixed == 0 and by[("1hop", "rl")].broken == 1
    assert by[("all", "rl")].n == 4 and by[("all", "rl")].diff.mean == pytest.approx(0.25)
    assert [(s.group, s.arm) for s in scores][:2] == [("1hop", "sft"), ("1hop", "rl")]
    text = comparison_markdown(scores, paired)
    assert "| w | 2hop | rl − sft | 2 | 1.000 [1.000, 1.000] | 2 | 0 | yes |" in text
    with pytest.raises(ValueError, match="unknown metric"):
        compare_arms({"sft": [base]}, metric="accuracy")
    with pytest.raises(ValueError, match="share no question"):
        compare_arms({"sft": [base], "rl": [_rows({"z": ("1hop", 1)})]})


def test_several_datasets_get_an_all_row_over_every_question() -> None:
    """Real sources are datasets of one group each: "all" pools them (F7's verdict reads it)."""
    base = [
        {**r, "dataset": "hotpot" if r["id"] in ("a", "b") else "musique"}
        for r in _rows({"a": ("h", 0), "b": ("h", 1), "c": ("m", 0), "d": ("m", 0)})
    ]
    rl = [
        {**r, "dataset": "hotpot" if r["id"] in ("a", "b") else "musique"}
        for r in _rows({"a": ("h", 1), "b": ("h", 1), "c": ("m", 1), "d": ("m", 0)})
    ]
    _, paired = compare_arms({"before": [base], "after": [rl]}, n_boot=200)
    by = {(p.dataset, p.group): p for p in paired}
    assert set(by) == {("hotpot", "h"), ("musique", "m"), (ALL_DATASETS, "all")}
    assert by[(ALL_DATASETS, "all")].n == 4 and by[(ALL_DATASETS, "all")].diff.mean == pytest.approx(0.5)


def test_searches_per_question_is_a_paired_metric_beside_searched() -> None:
    """F6 reads search behaviour from held-out rows: the count (searches) and the share that searched."""
    before = [{"id": f"q{i}", "dataset": "w", "group": "2hop", "searches": s} for i, s in enumerate([0, 1, 1, 2])]
    after = [{"id": f"q{i}", "dataset": "w", "group": "2hop", "searches": s} for i, s in enumerate([1, 2, 2, 3])]
    _, paired = compare_arms({"before": [before], "after": [after]}, metric="searches", n_boot=200)
    assert paired[0].diff.mean == pytest.approx(1.0) and paired[0].fixed == 4
    _, share = compare_arms({"before": [before], "after": [after]}, metric="searched", n_boot=200)
    assert share[0].diff.mean == pytest.approx(0.25)
