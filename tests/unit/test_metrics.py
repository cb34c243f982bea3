import pytest

from seft.metrics import mean_benefit, reviser_by_rank, reviser_summary


def row(rank, before, after, revised=True, label="major"):
    return {"rank": rank, "reward_original": before, "reward_revised": after, "revised": revised, "label": label}


def test_summary_by_hand():
    rows = [row(0, 1.0, 1.0, revised=False, label="no"),   # kept: benefit 0, not in improvement rate
            row(0, 0.5, 0.75),                             # +0.25, improved
            row(0, 0.5, 0.25, label="minor"),              # -0.25, worse
            row(0, 0.5, 0.5)]                              # tie: not improved
    s = reviser_summary(rows)
    assert s["n"] == 4
    assert s["mean_benefit"] == pytest.approx(0.0)
    assert s["improvement_rate"] == pytest.approx(1 / 3)
    assert s["revised_share"] == pytest.approx(0.75)
    assert s["labels"] == {"major": 0.5, "minor": 0.25, "no": 0.25}
    assert s["mean_reward_original"] == pytest.approx(0.625)


def test_no_revisions_has_no_improvement_rate():
    assert reviser_summary([row(1, 0.2, 0.2, revised=False, label="no")])["improvement_rate"] is None


def test_by_rank_and_weighted_mean():
    rows = [row(4, 0.0, 1.0), row(5, 0.0, 0.5), row(5, 0.0, 0.0), row(0, 1.0, 0.5)]
    by = reviser_by_rank(rows)
    assert list(by) == ["0", "4", "5", "all"]
    assert by["4"]["mean_benefit"] == 1.0 and by["5"]["mean_benefit"] == 0.25
    assert mean_benefit(by, (4, 5, 6)) == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert mean_benefit(by, (7, 8)) is None


def test_win_rate_counts_a_tie_as_half():
    from seft.metrics import win_rate

    out = win_rate([1.0, 0.5, 0.2, 0.9], [0.5, 0.5, 0.3, 0.1])  # win, tie, loss, win
    assert out == {"n": 4, "wins": 2, "ties": 1, "losses": 1, "win_rate": pytest.approx(2.5 / 4)}
    assert win_rate([0.3], [0.3])["win_rate"] == 0.5
    with pytest.raises(ValueError, match="equally long"):
        win_rate([1.0], [1.0, 2.0])


def test_improvement_rate_pools_the_revised_rows_of_several_ranks():
    from seft.metrics import improvement_rate

    rows = [row(0, 1.0, 1.0, revised=False, label="no"),  # kept: not counted
            row(0, 1.0, 0.5),                             # revised, worse
            row(1, 0.5, 0.75), row(1, 0.5, 1.0), row(1, 0.5, 0.5),  # 2 of 3 improved
            row(2, 0.0, 1.0)]                             # another rank: left out
    by = reviser_by_rank(rows)
    assert by["1"]["revised"] == 3 and by["1"]["improved"] == 2
    assert improvement_rate(by, (0, 1)) == pytest.approx(2 / 4)
    assert improvement_rate(by, (1,)) == pytest.approx(2 / 3)
    kept = reviser_by_rank([row(0, 1.0, 1.0, revised=False, label="no")])
    assert improvement_rate(kept, (0, 1)) is None  # nothing revised: no rate, not 0


def test_label_shares_and_the_one_label_warning():
    from seft.metrics import dominant_label, label_shares
    from seft.report import markdown, warnings
    from seft.stages.evaluate import one_label_warning

    shares = label_shares(["major"] * 19 + ["no"])
    assert shares == {"major": 0.95, "minor": 0.0, "no": 0.05} and dominant_label(shares) == ("major", 0.95)
    assert dominant_label({}) == (None, 0.0) and one_label_warning({}) is None
    assert one_label_warning(label_shares(["major"] * 18 + ["no"] * 2)) is None  # 90%: below the line
    warning = one_label_warning(shares)
    assert warning.startswith("the adaptive reviser labels 95% of the test originals [Major Revise]")
    report = {"name": "r", "summaries": {"label": {"warnings": ["a"]}, "evaluate": {"warnings": [warning]}}}
    assert warnings(report) == ["label: a", f"evaluate: {warning}"]
    assert f"## Warnings\n\n- label: a\n- evaluate: {warning}\n" in markdown(report, {})
