"""Operation counts of the spiking Transformer operators (neuro.energy.OpCounter) against hand-computed values."""
import torch

from neuro.converters import ConversionParams, calibrate, map_model
from neuro.converters.spiking_ops import SpikingLinear, SpikingMatMul
from neuro.energy import OpCounter
from neuro.models.transformer import TransformerLM, config_for


def test_spiking_linear_counts_accumulates_per_step():
    lin = SpikingLinear(3, 2, bias=False)
    lin.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))     # fan-out per input: 1, 0, 2
    x = torch.tensor([[[1.0, 0.0, -1.0]], [[0.0, 0.5, 0.5]]])                # [T=2, 1, 3] spikes
    with OpCounter(lin) as c:
        lin(x)
    ops = c.counts().layers["SpikingLinear"].ops
    assert ops["ac"].tolist() == [1 + 2, 0 + 2] and ops["mac"].tolist() == [0, 0]
    assert ops["ac_dense"].tolist() == [6, 6]
    x[1, 0, 1] = 0.75                                                        # not a power of two: a multiply
    with OpCounter(lin) as c:
        lin(x)
    ops = c.counts().layers["SpikingLinear"].ops
    assert ops["ac"].tolist() == [3, 0] and ops["mac"].tolist() == [0, 2]


def test_spiking_matmul_counts_the_running_sum_product():
    a = torch.tensor([[[1.0, 0, 0], [0, 0, 0]], [[0, -2.0, 0], [4.0, 0, 1.0]]])  # [T=2, n=2, k=3]: nnz 1, 3
    b = torch.tensor([[[1.0, 0], [0, 0], [0, 0]], [[0, 0], [0, 0], [0, 0]]])    # [T=2, k=3, m=2]: nnz 1, 0
    mm = SpikingMatMul()
    with OpCounter(mm) as c:
        mm(a, b)
    ops = c.counts().layers["SpikingMatMul"].ops
    assert ops["ac"].tolist() == [1 * 2 + 1 * 2, 3 * 2 + 0 * 2]              # nnz(A_t) m + nnz(B_t) n
    assert ops["ac_dense"].tolist() == [2 * 2 * 3 * 2] * 2


def test_counts_of_a_converted_model_match_hand_counts():
    T, B, L = 4, 1, 5
    cfg = config_for("gpt", vocab_size=11, d_model=8, n_layer=1, n_head=2, d_ff=12, max_seq=8)
    torch.manual_seed(0)
    m = TransformerLM(cfg).eval()
    snn = map_model(m, calibrate(m, [torch.randint(0, 11, (2, 8))]), ConversionParams(timesteps=T))
    enc = {}
    snn.blocks[0].attn.enc_x.register_forward_hook(lambda mod, i, o: enc.setdefault("x", o))
    x = torch.randint(0, 11, (B, L))
    with OpCounter(snn) as c:
        snn(x)
    layers = c.counts().layers
    s = enc["x"]                                                              # [T, B, L, D] spikes into q, k, v
    fan = (snn.blocks[0].attn.q.weight != 0).sum(0)
    hand = [int(((s[t].reshape(-1, 8) != 0).sum(0) * fan).sum()) for t in range(T)]
    assert layers["blocks.0.attn.q"].ops["ac"].tolist() == hand
    assert layers["blocks.0.attn.enc_x"].ops["spike"].tolist() == [int((s[t] != 0).sum()) for t in range(T)]
    assert layers["blocks.0.attn.softmax"].ops["nonlinear"].tolist() == [B * 2 * L * L] * T   # exp per score
    assert layers["blocks.0.attn.softmax"].ops["mac"].tolist() == [B * 2 * L * L] * T         # the division
    assert layers["blocks.0.mlp.act"].ops["nonlinear"].tolist() == [B * L * 12] * T
    assert layers["blocks.0.norm1"].ops["mac"].tolist() == [3 * B * L * 8] * T
    synapses = [lc for lc in layers.values() if lc.kind == "synapse"]
    assert len(synapses) == 4 + 2 + 2 + 1 and all(lc.total("mac") == 0 for lc in synapses)  # accumulate-only
