"""gradcheck passes correct rules and catches planted wrong ones, in each mode it claims to check."""
from __future__ import annotations

import numpy as np
import pytest
from opinfo import OPS, sample_inputs

import gpuad as ga
from gpuad.autograd.function import Op, apply
from gpuad.autograd.gradcheck import GradcheckError

RNG = np.random.default_rng(0)


def t64(*shape):
    return ga.tensor(RNG.standard_normal(shape))


def _sin_op(vjp_scale=1.0, jvp_partial=ga.cos, second_order_ok=True):
    """sin with configurable rules: a wrong VJP scale, a wrong JVP partial, or rules that hide their
    dependence on x from higher derivatives (detach), which only a second-order check sees."""
    def partial(x):
        return jvp_partial(x if second_order_ok else x.detach())

    return Op("planted_sin", lambda xp, x: xp.sin(x), save="x",
              vjp=(lambda c, g: g * ga.cos(c.x if second_order_ok else c.x.detach()) * vjp_scale,),
              jvp=(lambda c, t: t * partial(c.x),))


def _use(op):
    return lambda x, w: apply(op, (w @ x,), {}) * 2.0


def test_passes_correct_functions_to_second_order():
    x, w = t64(3), t64(2, 3)
    assert ga.gradcheck(lambda x, w: ga.tanh(w @ x), (x, w), check_second_order=True)
    z = t64(4)
    softmax = lambda z: ga.exp(z) / ga.exp(z).sum()
    assert ga.gradcheck(softmax, z, check_second_order=True)
    assert ga.gradcheck(_use(_sin_op()), (x, w), check_second_order=True)


def test_catches_a_wrong_vjp_and_reports_the_worst_element():
    x, w = t64(3), t64(2, 3)
    with pytest.raises(GradcheckError) as info:
        ga.gradcheck(_use(_sin_op(vjp_scale=1.01)), (x, w))
    message = str(info.value)
    assert "reverse-mode (VJP)" in message and "analytic" in message and "numeric" in message
    analytic, numeric = (float(message.split(word + " ")[1].split()[0].rstrip(",")) for word in
                         ("analytic", "numeric"))
    np.testing.assert_allclose(analytic, 1.01 * numeric, rtol=1e-6)


def test_catches_a_wrong_jvp_only_when_forward_mode_is_checked():
    x, w = t64(3), t64(2, 3)
    bad_jvp = _use(_sin_op(jvp_partial=ga.sin))
    with pytest.raises(GradcheckError, match="forward-mode"):
        ga.gradcheck(bad_jvp, (x, w))
    assert ga.gradcheck(bad_jvp, (x, w), check_forward=False)


def test_catches_rules_that_are_wrong_only_at_second_order():
    x, w = t64(3), t64(2, 3)
    hidden = _use(_sin_op(second_order_ok=False))
    assert ga.gradcheck(hidden, (x, w))
    with pytest.raises(GradcheckError, match="second-order reverse-over-reverse"):
        ga.gradcheck(hidden, (x, w), check_second_order=True)


def test_refuses_float32_with_an_explanation():
    with pytest.raises(ga.DtypeError, match="float64.*false alarms"):
        ga.gradcheck(ga.tanh, ga.tensor([0.5, 1.0]))


def test_integer_inputs_pass_through():
    logits, labels = t64(3, 4), ga.tensor(np.array([0, 3, 1]))
    nll = lambda z, y: -(z - ga.logsumexp(z, axis=1, keepdims=True))[np.arange(3), y].mean()
    assert ga.gradcheck(nll, (logits, labels), check_second_order=True)


def _largest_small_sample(info):
    """The op's sample with the most elements, up to 12 (keeps the second-order check fast)."""
    size = lambda s: sum(int(np.prod(shape)) for shape in s.shapes)
    return max((s for s in info.samples if 0 < size(s) <= 12), key=size, default=None)


@pytest.mark.parametrize("info", [i for i in OPS if i.grad and i.second_order and _largest_small_sample(i)],
                         ids=lambda i: i.name)
def test_every_op_to_second_order_in_both_modes(info):
    """Each op's JVP of its VJP rules (forward-over-reverse) and VJP of them, vs finite differences."""
    sample = _largest_small_sample(info)
    arrays = sample_inputs(info, sample, np.random.default_rng(0))
    assert ga.gradcheck(lambda *xs: info.op(*xs, **sample.kwargs), [ga.tensor(a) for a in arrays],
                        atol=1e-6, rtol=1e-4, check_second_order=True)
