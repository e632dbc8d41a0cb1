"""CUCB bandit: formula, selection, warm-up, means, discounting, state, errors."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_slim.dce.bandit import CUCB, active_count, segments


def test_ucb_formula_hand_computed():
    b = CUCB(3, k=1, warmup_steps=0, exploration=1.0)
    b.update([0], [1.0])
    b.update([1], [0.5])
    b.update([2], [0.2])
    # Round 4: mu + sqrt(3 ln 4 / (2 * 1)).
    bonus = math.sqrt(3 * math.log(4) / 2)
    np.testing.assert_allclose(b.scores(), [1.0 + bonus, 0.5 + bonus, 0.2 + bonus])
    b.update([0], [0.0])  # arm 0: T = 2, mean 0.5
    np.testing.assert_allclose(b.scores(), [0.5 + math.sqrt(3 * math.log(5) / 4),
                                            0.5 + math.sqrt(3 * math.log(5) / 2),
                                            0.2 + math.sqrt(3 * math.log(5) / 2)])
    assert b.t == 4


def test_exploration_coefficient_scales_bonus():
    b = CUCB(2, k=1, exploration=2.5)
    b.update([0], [1.0])
    b.update([1], [3.0])
    bonus = 2.5 * math.sqrt(3 * math.log(3) / 2)
    np.testing.assert_allclose(b.scores(), [1.0 + bonus, 3.0 + bonus])
    greedy = CUCB(2, k=1, exploration=0.0)
    greedy.update([0, 1], [1.0, 3.0])
    np.testing.assert_allclose(greedy.scores(), [1.0, 3.0])


def test_select_takes_top_fraction():
    b = CUCB(10, fraction=0.3, exploration=1.0, seed=0)
    assert b.k == 3
    b.update(np.arange(10), np.arange(10) / 10.0)  # every arm once: equal bonus
    np.testing.assert_array_equal(b.select(), [7, 8, 9])


def test_exploration_prefers_rarely_played_arm():
    b = CUCB(2, k=1, exploration=1.0)
    for _ in range(50):
        b.update([0], [1.0])
    b.update([1], [0.9])
    assert b.select().tolist() == [1]  # T=1 bonus beats a 0.1 mean gap
    b.exploration = 0.0
    assert b.select().tolist() == [0]


def test_untried_arms_go_first():
    b = CUCB(6, k=2, seed=3)
    b.update([0, 1, 2], [5.0, 5.0, 5.0])
    assert np.isinf(b.scores()[3:]).all()
    chosen = b.select()
    assert set(chosen.tolist()) <= {3, 4, 5}


def test_warmup_random_and_reproducible():
    def run(seed):
        b = CUCB(20, fraction=0.25, warmup_steps=5, seed=seed)
        picks = []
        for _ in range(5):
            assert b.in_warmup
            active = b.select()
            picks.append(active.tolist())
            b.update(active, np.ones(len(active)))
        assert not b.in_warmup
        return picks

    a, again, other = run(7), run(7), run(8)
    assert a == again
    assert a != other
    assert all(len(p) == 5 and len(set(p)) == 5 for p in a)
    assert len({tuple(p) for p in a}) > 1  # not the same set every step


def test_incremental_mean_exact():
    rng = np.random.default_rng(0)
    b = CUCB(5, k=2)
    seen = {i: [] for i in range(5)}
    for _ in range(200):
        active = rng.choice(5, 2, replace=False)
        rewards = rng.normal(size=2) * 10
        b.update(active, rewards)
        for i, r in zip(active, rewards):
            seen[int(i)].append(r)
    for i in range(5):
        assert b.T[i] == len(seen[i])
        assert b.mu[i] == pytest.approx(np.mean(seen[i]), abs=1e-12)


def test_discount_hand_computed():
    b = CUCB(2, k=1, discount=0.5)
    b.update([0], [1.0])
    b.update([1], [2.0])
    np.testing.assert_allclose(b.T, [0.5, 1.0])
    np.testing.assert_allclose(b.mu, [1.0, 2.0])
    b.update([0], [3.0])
    np.testing.assert_allclose(b.T, [1.25, 0.5])
    np.testing.assert_allclose(b.mu, [3.25 / 1.25, 2.0])
    assert b.rounds == pytest.approx(1.75)
    t = 1 + 1.75
    np.testing.assert_allclose(
        b.scores(), [2.6 + math.sqrt(3 * math.log(t) / 2.5), 2.0 + math.sqrt(3 * math.log(t))])


def test_state_round_trip_through_json():
    b = CUCB(8, fraction=0.5, warmup_steps=3, discount=0.9, seed=11)
    for _ in range(6):
        active = b.select()
        b.update(active, np.linspace(0, 1, len(active)))
    state = json.loads(json.dumps(b.get_state()))
    c = CUCB.from_state(state)
    assert c.t == b.t and c.k == b.k and c.discount == b.discount
    np.testing.assert_array_equal(c.T, b.T)
    np.testing.assert_array_equal(c.mu, b.mu)
    for _ in range(4):  # same RNG and statistics: the same future
        x, y = b.select(), c.select()
        np.testing.assert_array_equal(x, y)
        b.update(x, np.ones(len(x)))
        c.update(y, np.ones(len(y)))
    with pytest.raises(ValueError, match="arms"):
        CUCB(9).set_state(state)
    with pytest.raises(ValueError, match="format"):
        CUCB(8).set_state({"T": []})


@pytest.mark.parametrize("kwargs, argument", [
    (dict(fraction=0.0), "fraction"), (dict(fraction=1.5), "fraction"),
    (dict(fraction=-0.2), "fraction"), (dict(fraction=float("nan")), "fraction"),
    (dict(warmup_steps=-1), "warmup_steps"), (dict(warmup_steps=1.5), "warmup_steps"),
    (dict(discount=0.0), "discount"), (dict(discount=1.0), "discount"),
    (dict(discount=2.0), "discount"), (dict(exploration=-1.0), "exploration"),
    (dict(k=0), "k"), (dict(k=11), "k"),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        CUCB(10, **kwargs)


def test_bad_update():
    b = CUCB(4, k=2)
    with pytest.raises(ValueError, match="active_indices"):
        b.update([0, 0], [1.0, 1.0])
    with pytest.raises(ValueError, match="active_indices"):
        b.update([0, 4], [1.0, 1.0])
    with pytest.raises(ValueError, match="rewards"):
        b.update([0, 1], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        b.update([0, 1], [1.0, float("nan")])
    with pytest.raises(ValueError, match="num_arms"):
        CUCB(0)


def test_fraction_one_plays_everything():
    b = CUCB(5, fraction=1.0)
    assert b.select().tolist() == [0, 1, 2, 3, 4]
    assert active_count(10, 0.25) == 3 and active_count(3, 0.01) == 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), fraction=st.floats(0.01, 1.0), warmup=st.integers(0, 3),
       seed=st.integers(0, 2 ** 16), steps=st.integers(1, 8))
def test_select_is_k_unique_sorted_arms(n, fraction, warmup, seed, steps):
    b = CUCB(n, fraction=fraction, warmup_steps=warmup, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        active = b.select()
        assert len(active) == b.k == active_count(n, fraction)
        assert np.all(np.diff(active) > 0) and active.min() >= 0 and active.max() < n
        b.update(active, rng.random(len(active)))
    assert b.T.sum() == pytest.approx(b.k * steps)


@settings(max_examples=30, deadline=None)
@given(rewards=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30))
def test_mean_matches_numpy(rewards):
    b = CUCB(1, k=1)
    for r in rewards:
        b.update([0], [r])
    assert b.mu[0] == pytest.approx(np.mean(rewards), rel=1e-9, abs=1e-9)


def test_segments_play_a_fixed_count_in_each():
    # ResNet option A: tensors holding arms 0-3, 0-7 and 0-15 -> segments 4 + 4 + 8 arms
    segs = segments([range(4), range(8), range(16)], 16)
    assert [s.tolist() for s in segs] == [list(range(4)), list(range(4, 8)),
                                         list(range(8, 16))]
    bandit = CUCB(16, fraction=0.5, warmup_steps=2, seed=1, segments=segs)
    assert bandit.k == 2 + 2 + 4
    mu = np.arange(16.0)[::-1]  # arm 0 best
    for step in range(6):
        active = bandit.select()
        assert [int(np.isin(active, s).sum()) for s in segs] == [2, 2, 4]
        bandit.update(active, mu[active])
    assert bandit.best().tolist() == [0, 1, 4, 5, 8, 9, 10, 11]  # top 2 / 2 / 4 by mean
    again = CUCB.from_state(json.loads(json.dumps(bandit.get_state())))
    assert [(a.tolist(), k) for a, k in again.segment_counts()] == \
        [(a.tolist(), k) for a, k in bandit.segment_counts()]
    assert again.select().tolist() == bandit.select().tolist()  # same RNG, same state
    # one segment is exactly the plain top-k, random draws included
    plain, one = CUCB(8, 0.5, warmup_steps=3, seed=7), \
        CUCB(8, 0.5, warmup_steps=3, seed=7, segments=[np.arange(8)])
    for _ in range(5):
        a, b = plain.select(), one.select()
        assert a.tolist() == b.tolist()
        plain.update(a, np.ones(4))
        one.update(b, np.ones(4))
    with pytest.raises(ValueError, match="partition"):
        CUCB(4, segments=[np.arange(3)])
