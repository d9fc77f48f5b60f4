"""ga.nn modules: registration, state_dict round trips and errors, modes, devices/dtypes, repr, PyTorch's
default initialization, and layers against NumPy references."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gpuad as ga
from gpuad import nn

RNG = np.random.default_rng(1)


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 3))


def test_parameters_buffers_and_names():
    m = small_cnn()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert all(p.requires_grad and isinstance(p, nn.Parameter) for p in m.parameters())
    assert list(m.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                    "1.running_var", "1.num_batches_tracked", "5.weight", "5.bias"]
    assert [type(c).__name__ for c in m.children()][:2] == ["Conv2d", "BatchNorm2d"]
    assert sum(p.size for p in m.parameters()) == 4 * 9 + 4 + 4 + 4 + 16 * 3 + 3


def test_shared_parameter_is_listed_once_and_custom_module():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a
            self.scale = nn.Parameter(ga.ones(1))
            self.note = "plain attribute"

        def forward(self, x):
            return self.b(self.a(x)) * self.scale

    m = Tied()
    assert [n for n, _ in m.named_parameters()] == ["scale", "a.weight", "a.bias"]
    assert m.note == "plain attribute"
    assert m(ga.randn(2, 3)).shape == (2, 3)


def test_state_dict_round_trip_restores_outputs():
    ga.manual_seed(0)
    a, b = small_cnn(), small_cnn()
    x = ga.randn(2, 1, 4, 4)
    a.train()
    a(x)  # moves the running statistics
    a.eval()
    b.load_state_dict(a.state_dict())
    b.eval()
    np.testing.assert_array_equal(b(x).numpy(), a(x).numpy())
    assert b[1].num_batches_tracked.item() == 1


def test_load_state_dict_reports_missing_unexpected_and_shape_mismatch():
    m = nn.Linear(3, 2)
    sd = m.state_dict()
    with pytest.raises(ga.ShapeError, match=r"missing keys: bias"):
        m.load_state_dict({"weight": sd["weight"]})
    with pytest.raises(ga.ShapeError, match=r"unexpected keys: extra"):
        m.load_state_dict({**sd, "extra": ga.zeros(1)})
    with pytest.raises(ga.ShapeError, match=r"size mismatch for weight: the checkpoint has shape \(3, 3\), "
                                            r"the model has shape \(2, 3\)"):
        m.load_state_dict({"weight": ga.zeros(3, 3), "bias": sd["bias"]})
    missing, unexpected = m.load_state_dict({"weight": ga.ones(2, 3), "extra": 1.0}, strict=False)
    assert missing == ["bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(m.weight.numpy(), np.ones((2, 3)))


def test_train_eval_modes_reach_every_submodule():
    m = nn.Sequential(nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.5)))
    m.eval()
    assert not any(x.training for x in m.modules())
    x = ga.ones(10)
    assert m(x) is x
    m.train()
    assert all(x.training for x in m.modules())


def test_to_float64_and_gradcheck_through_a_model():
    ga.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 2),
                      nn.GELU(), nn.LayerNorm(2)).to(ga.float64)
    assert all(p.dtype == ga.float64 for p in m.parameters())
    assert ga.gradcheck(lambda x: m(x), ga.tensor(RNG.standard_normal((2, 1, 4, 4))))


def test_repr_is_readable():
    m = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Linear(4, 2, bias=False))
    assert repr(m) == (
        "Sequential(\n"
        "  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))\n"
        "  (1): ReLU()\n"
        "  (2): Linear(in_features=4, out_features=2, bias=False)\n"
        ")")


@pytest.mark.parametrize("layer,fan_in", [(lambda: nn.Linear(50, 40), 50),
                                          (lambda: nn.Conv2d(6, 20, 3, groups=2), 3 * 9)])
def test_default_init_is_torchs_uniform(layer, fan_in):
    ga.manual_seed(0)
    m = layer()
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(m.bias.numpy()).max() <= bound
    v = m.weight.numpy()
    assert np.abs(v).max() <= bound
    assert np.abs(v).max() > 0.95 * bound  # spread over the whole interval
    assert abs(v.std() - bound / math.sqrt(3)) < 0.1 * bound  # the std of U(-b, b)


def test_init_is_reproducible_with_manual_seed():
    ga.manual_seed(3)
    a = nn.Linear(4, 4).weight.numpy()
    ga.manual_seed(3)
    np.testing.assert_array_equal(nn.Linear(4, 4).weight.numpy(), a)


def test_batchnorm_module_running_stats_and_shape_error():
    bn = nn.BatchNorm1d(3, momentum=0.5)
    x = RNG.standard_normal((8, 3))
    bn(ga.tensor(x, dtype=ga.float32))
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.5 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-5)
    with pytest.raises(ga.ShapeError, match=r"BatchNorm1d\(3\): expected input with 2 or 3 dims"):
        bn(ga.randn(2, 4))


def test_embedding_module():
    ga.manual_seed(0)
    e = nn.Embedding(10, 4, padding_idx=0)
    np.testing.assert_array_equal(e.weight.numpy()[0], 0)
    assert e(np.array([[1, 2, 0]])).shape == (1, 3, 4)
    assert abs(e.weight.numpy()[1:].std() - 1) < 0.4


def test_multihead_attention_matches_numpy():
    ga.manual_seed(0)
    e, h, lq, lk, n = 8, 2, 3, 4, 2
    mha = nn.MultiheadAttention(e, h, batch_first=True).to(ga.float64)
    q, k, v = RNG.standard_normal((n, lq, e)), RNG.standard_normal((n, lk, e)), RNG.standard_normal((n, lk, e))
    pad = np.zeros((n, lk), bool)
    pad[1, -1] = True
    out, w = mha(ga.tensor(q), ga.tensor(k), ga.tensor(v), key_padding_mask=pad)
    W, B = mha.in_proj_weight.numpy(), mha.in_proj_bias.numpy()
    d = e // h

    def heads(x, i):
        y = x @ W[i * e:(i + 1) * e].T + B[i * e:(i + 1) * e]
        return y.reshape(n, -1, h, d).transpose(0, 2, 1, 3)

    s = heads(q, 0) @ heads(k, 1).transpose(0, 1, 3, 2) / math.sqrt(d)
    s = np.where(pad[:, None, None, :], -np.inf, s)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = (p @ heads(v, 2)).transpose(0, 2, 1, 3).reshape(n, lq, e)
    ref = o @ mha.out_proj.weight.numpy().T + mha.out_proj.bias.numpy()
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(w.numpy(), p.mean(1), atol=1e-12)
    assert np.all(w.numpy()[1, :, -1] == 0)


def test_multihead_attention_sequence_first_and_causal():
    ga.manual_seed(0)
    mha = nn.MultiheadAttention(4, 1)
    x = ga.randn(5, 2, 4)  # (L, N, E)
    out, w = mha(x, x, x, is_causal=True, need_weights=True)
    assert out.shape == (5, 2, 4) and w.shape == (2, 5, 5)
    np.testing.assert_allclose(np.triu(w.numpy(), 1), 0)
    per_head = np.broadcast_to(np.triu(np.ones((5, 5), bool), 1), (2, 5, 5))  # (N*H, L, L), torch's 3-D form
    out3, w3 = mha(x, x, x, attn_mask=per_head)
    np.testing.assert_allclose(out3.numpy(), out.numpy(), atol=1e-6)
    out.sum().backward()
    assert mha.in_proj_weight.grad.shape == (12, 4)


def test_clip_grad_norm():
    a, b = nn.Parameter(ga.zeros(2)), nn.Parameter(ga.zeros(1))
    a.grad, b.grad = ga.tensor([3.0, 0.0]), ga.tensor([4.0])
    total = nn.utils.clip_grad_norm_([a, b], 1.0)
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([a.grad.numpy(), b.grad.numpy()]), [0.6, 0, 0.8], rtol=1e-5)
    assert ga.optim.clip_grad_norm([a, b], 10.0) == pytest.approx(1.0, rel=1e-5)  # no change below the limit
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0], rtol=1e-5)
