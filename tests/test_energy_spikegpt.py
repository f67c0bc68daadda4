"""SpikeGPT operation counts: the formula (a) against OpCounter on an actual run (b), and the formula by hand."""
import pytest
import torch

from neuro.core.errors import ParameterError
from neuro.energy import OpCounter
from neuro.energy.spikegpt import E_AC_PJ, E_MAC_PJ, WKV_EXP, WKV_MAC, spikegpt_ops
from neuro.models.rwkv import RWKVLM
from neuro.models.spikegpt import SpikeGPT, SpikeGPTConfig

T, D, L, V = 12, 16, 2, 11


def _model():
    torch.manual_seed(0)
    m = SpikeGPT(SpikeGPTConfig(vocab_size=V, d_model=D, n_layer=L))
    with torch.no_grad():  # the zero-initialised output weights drawn at random, so the LIFs fire
        for b in m.blocks:
            for lin in (b.att.output, b.ffn.value, b.ffn.receptance):
                torch.nn.init.normal_(lin.weight, 0.0, 1.0)
    return m.eval()


def _count(m, idx):
    with OpCounter(m) as c:
        m(idx)
    return c.counts()


def test_formula_by_hand():
    a = spikegpt_ops(T=2, d=4, layers=1, rate=0.25, vocab=3)
    dense = 2 * (4 * 4 * 4 + 2 * 4 * 16 + 4 * 4)  # key, value, receptance, output; ffn key, value; ffn receptance
    assert a["synaptic_dense"] == dense == 416 and a["ac"] == 104.0
    assert a["mac_parts"] == {"wkv": 2 * WKV_MAC * 4, "gates": 2 * 8, "squared_relu": 2 * 16,
                              "layernorm": 2 * 3 * 3 * 4, "token_shift_mix": 2 * 2 * 5 * 4, "head": 2 * 4 * 3}
    assert a["mac"] == 56 + 16 + 32 + 72 + 80 + 24
    assert a["nonlinear"] == 2 * (4 + (WKV_EXP * 4 + 4 + 4 + 16 + 2) + 1)
    assert a["spike"] == 0.25 * a["neuron_update"] == 0.25 * 2 * 8
    assert a["energy_pj"] == pytest.approx(E_MAC_PJ * 280 + E_AC_PJ * 104)
    assert a["energy_pj_float"] == pytest.approx(E_MAC_PJ * (280 + 416))


def test_counted_run_against_the_formula():
    """(b) finds every weight layer fed by a LayerNorm output, not by spikes: its dense MACs are (a)'s synaptic
    count plus (a)'s non-spiking MACs, less the token-shift interpolations the rules do not count; no AC at all."""
    m = _model()
    idx = torch.randint(0, V, (1, T))
    b = _count(m, idx)
    tot = b.totals()
    updates = tot["neuron_update_active"] + tot["neuron_update_inactive"]
    rate = tot["spike"] / updates  # the measured spike rate of the LIF layers
    assert 0.05 < rate < 0.5
    a = spikegpt_ops(T=T, d=D, layers=L, rate=rate, vocab=V)
    assert tot["ac"] == tot["ac_dense"] == 0  # no spike-driven weight layer in a run
    assert tot["mac_dense"] == a["synaptic_dense"] + a["mac"] - a["mac_parts"]["token_shift_mix"]
    synapse = sum(lc.total("mac_dense") for lc in b.layers.values() if lc.kind == "synapse")
    assert synapse == a["synaptic_dense"] + a["mac_parts"]["head"]
    assert tot["nonlinear"] == a["nonlinear"]
    assert updates == a["neuron_update"] and tot["spike"] == pytest.approx(a["spike"])
    assert b.layers["blocks.0.att.wkv"].total("mac") == T * WKV_MAC * D
    # what the formula claims instead: the same synaptic work as ACs at the spike rate
    assert a["ac"] == pytest.approx(rate * synapse - rate * a["mac_parts"]["head"])


def test_float_rwkv_counts_the_same_non_spiking_parts():
    torch.manual_seed(0)
    r = RWKVLM(SpikeGPTConfig(vocab_size=V, d_model=D, n_layer=L).rwkv()).eval()
    tot = _count(r, torch.randint(0, V, (1, T))).totals()
    a = spikegpt_ops(T=T, d=D, layers=L, rate=0.0, vocab=V)
    # the float model: an input LayerNorm (3 MACs per element, one rsqrt per token) and no binarisation
    assert tot["mac_dense"] == a["synaptic_dense"] + a["mac"] - a["mac_parts"]["token_shift_mix"] + 3 * T * D
    assert tot["nonlinear"] == a["nonlinear"] - T * D + T
    assert tot["spike"] == tot["ac"] == 0


def test_bad_arguments_are_named():
    with pytest.raises(ParameterError, match="rate"):
        spikegpt_ops(T=4, d=8, layers=1, rate=1.5, vocab=5)
    with pytest.raises(ParameterError, match="layers"):
        spikegpt_ops(T=4, d=8, layers=0, rate=0.1, vocab=5)
