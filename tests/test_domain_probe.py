"""The linear domain probe (dtda_jax/analysis/domain_probe.py): the ridge classifier against
scikit-learn in both of its forms, its split by person, and that it reads domain cues."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from dtda_jax.analysis import domain_probe as P


def sklearn_balanced_accuracy(x, domain, train, ridge=P.RIDGE):
    z = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
    classes, y = np.unique(domain, return_inverse=True)
    predicted = Ridge(alpha=ridge).fit(z[train], np.eye(len(classes))[y[train]]).predict(z[~train]).argmax(1)
    return np.mean([np.mean(predicted[y[~train] == k] == k) for k in range(len(classes))])


@pytest.mark.parametrize("dims", [20, 500])  # fewer and more features than training frames
def test_ridge_probe_equals_scikit_learn(dims):
    rng = np.random.default_rng(dims)
    domain = rng.integers(0, 4, 240)
    person = np.arange(240) // 3
    x = rng.normal(size=(240, dims)) + 0.2 * domain[:, None] * rng.normal(size=dims)
    train = P.person_halves(person)
    assert P.ridge_probe_accuracy(x, domain, train) == pytest.approx(sklearn_balanced_accuracy(x, domain, train),
                                                                      abs=1e-12)


def test_person_halves_keep_each_person_on_one_side():
    person = np.repeat(np.arange(11), 4)
    train = P.person_halves(person, seed=3)
    for p in range(11):
        assert len(set(train[person == p])) == 1
    assert train.sum() == 5 * 4
    assert not np.array_equal(train, P.person_halves(person, seed=4))


def test_probe_reads_domain_cues_and_nothing_else():
    rng = np.random.default_rng(0)
    domain = np.repeat(np.arange(4), 60)
    person = np.arange(240) // 2
    train = P.person_halves(person)
    cue = rng.normal(size=(4, 32))
    with_cue = rng.normal(size=(240, 32)) + cue[domain]
    without = rng.normal(size=(240, 32))
    assert P.ridge_probe_accuracy(with_cue, domain, train) > 0.95
    assert abs(P.ridge_probe_accuracy(without, domain, train) - 0.25) < 0.12
