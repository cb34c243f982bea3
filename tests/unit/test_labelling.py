import math

import pytest

from seft.labelling import Label, Rule, assign, threshold_label, uniform

ALPHA, BETA = 0.3, 1.0


@pytest.mark.parametrize("benefit, expected", [
    (BETA + 1e-9, Label.MAJOR),   # strictly above beta
    (BETA, Label.MINOR),          # beta itself is minor (alpha <= b <= beta)
    (0.65, Label.MINOR),
    (ALPHA, Label.MINOR),         # alpha itself is minor
    (ALPHA - 1e-9, Label.NO),     # strictly below alpha
    (-5.0, Label.NO),
    (50.0, Label.MAJOR),
])
def test_threshold_boundaries(benefit, expected):
    assert threshold_label(benefit, ALPHA, BETA) is expected


def test_non_finite_benefit_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        threshold_label(math.nan, ALPHA, BETA)


def test_major_is_never_relabelled():
    rule = Rule(ALPHA, BETA, p=0.0)
    assert all(assign(2.0, f"id-{i}", rule) == (Label.MAJOR, False) for i in range(200))


def test_p_one_keeps_every_label_and_p_zero_relabels_every_minor_and_no():
    keep, flip = Rule(ALPHA, BETA, p=1.0), Rule(ALPHA, BETA, p=0.0, relabel_to=Label.MAJOR)
    for i in range(200):
        assert assign(0.5, f"x{i}", keep) == (Label.MINOR, False)
        assert assign(0.0, f"x{i}", keep) == (Label.NO, False)
        assert assign(0.5, f"x{i}", flip) == (Label.MAJOR, True)
        assert assign(0.0, f"x{i}", flip) == (Label.MAJOR, True)


@pytest.mark.parametrize("p", [0.8, 0.5, 0.2])
def test_p_controls_the_share_that_stands(p):
    rule = Rule(ALPHA, BETA, p=p, seed=7)
    n = 20000
    stood = sum(assign(0.0, f"sample-{i}", rule)[0] is Label.NO for i in range(n))
    # binomial standard deviation at n=20000 is <= 0.0036; 0.015 is over 4 sigma
    assert abs(stood / n - p) < 0.015


def test_relabelling_is_seeded_and_independent_of_order():
    rule = Rule(ALPHA, BETA, p=0.5, seed=3)
    ids = [f"s{i}" for i in range(500)]
    first = [assign(0.5, i, rule) for i in ids]
    again = [assign(0.5, i, rule) for i in reversed(ids)][::-1]
    assert first == again
    other_seed = [assign(0.5, i, Rule(ALPHA, BETA, p=0.5, seed=4)) for i in ids]
    assert first != other_seed
    assert 0 <= uniform(3, "s1") < 1


def test_relabel_to_is_a_setting():
    rule = Rule(ALPHA, BETA, p=0.0, relabel_to=Label.MINOR)
    assert assign(0.0, "a", rule) == (Label.MINOR, True)
    assert assign(0.5, "a", rule) == (Label.MINOR, False)  # already minor: not a change


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 2.0, "beta": 1.0}, "must not exceed"),
    ({"p": 1.5}, "within"),
    ({"alpha": math.nan}, "finite"),
])
def test_rule_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rule(**kwargs)
