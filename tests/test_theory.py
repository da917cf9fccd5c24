"""Properties of the closed forms that the notebook's audits do not already cover:
invariances, monotonicity, scale, and input handling."""
import numpy as np
import pytest

from flownb.theory import (gaussian_nll, optimal_attack, universal_attack, adversarial_training,
                           adv_alpha, adversarial_variance, natural_drop, min_adversarial_steps)


def random_spd(n, rng):
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q*np.exp(rng.uniform(-2, 2, n))) @ Q.T


def test_attack_is_rotation_equivariant():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 9)); K = random_spd(n, rng); mu = rng.standard_normal(n); x = mu + rng.standard_normal(n)
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        np.testing.assert_allclose(optimal_attack(Q @ x, Q @ mu, Q @ K @ Q.T, 0.8), Q @ optimal_attack(x, mu, K, 0.8), atol=1e-9)


def test_attacked_nll_grows_with_eps():
    rng = np.random.default_rng(2)
    K = random_spd(6, rng); mu = rng.standard_normal(6); X = mu + rng.standard_normal((50, 6))
    nll = [gaussian_nll(X + optimal_attack(X, mu, K, e), mu, K) for e in (0, .1, .5, 1, 2, 4)]
    assert all((b > a).all() for a, b in zip(nll[1:], nll[2:])) and (nll[1] > nll[0]).all()


def test_attack_at_scale_beats_every_sampled_direction():
    rng = np.random.default_rng(3)
    n = 300; K = random_spd(n, rng); mu = np.zeros(n); x = rng.standard_normal(n); eps = 1.5
    best = gaussian_nll(x + optimal_attack(x, mu, K, eps), mu, K)
    D = rng.standard_normal((2000, n)); D *= eps/np.linalg.norm(D, axis=1, keepdims=True)
    g = np.linalg.solve(K, x)                         # gradient direction of the NLL
    candidates = np.vstack([D, eps*g/np.linalg.norm(g), universal_attack(K, eps), -universal_attack(K, eps)])
    assert best >= gaussian_nll(x + candidates, mu, K).max()


def test_accepts_lists_and_returns_float_for_one_point():
    v = gaussian_nll([0.0, 1.0], [0, 0], [[1, 0], [0, 1]])
    assert isinstance(v, float) and np.isclose(v, np.log(2*np.pi) + 0.5)


@pytest.mark.parametrize("call, message", [
    (lambda: optimal_attack([1.0, 2.0], [0, 0], [[1, 0], [0, 1]], -0.1), "eps must be"),
    (lambda: optimal_attack([1.0, np.inf], [0, 0], np.eye(2), 1), "NaN or Inf"),
    (lambda: optimal_attack([1.0, 2.0], [0, 0], [[1, 0.5], [0.4, 1]], 1), "not symmetric"),
    (lambda: optimal_attack([1.0, 2.0], [0, 0], [[1, 0], [0, 0]], 1), "not positive definite"),
    (lambda: optimal_attack([1.0, 2.0], [0, 0], [[np.nan, 0], [0, 1]], 1), "NaN or Inf"),
    (lambda: universal_attack(np.ones(3), 1), "square"),
    (lambda: adversarial_training(np.zeros((3, 5)), 1, 1), "more samples than dimensions"),
    (lambda: adv_alpha(1, 1, 0), "n must be a positive integer"),
    (lambda: adversarial_variance(-1, 1, 1, 3), "m must be >= 0"),
    (lambda: min_adversarial_steps(1, 0, 3, 1, 0.1), "eps must be"),
])
def test_bad_input_is_a_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_adversarial_training_is_deterministic_and_leaves_input_alone():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((400, 4)); X0 = X.copy()
    a = adversarial_training(X, 0.5, 3, "cumulative"); b = adversarial_training(X, 0.5, 3, "cumulative")
    assert all(np.array_equal(ka, kb) and np.array_equal(ma, mb) for (ma, ka), (mb, kb) in zip(a, b))
    assert np.array_equal(X, X0)


def test_natural_drop_is_zero_without_attack_and_grows_with_training():
    assert natural_drop(5, 1.0, 0.0, 10) == 0
    assert np.all(np.diff(natural_drop(np.arange(6), 1.0, 0.3, 10, "cumulative")) > 0)
