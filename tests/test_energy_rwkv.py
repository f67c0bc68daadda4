"""Energy of RWKV language models: the float RWKV's rules against hand counts, ``neuro energy`` on a
converted (spiking) RWKV folder and on a float one, per token, the state carried across windows, SpikeGPT."""
import json

import pytest
import torch

from neuro.cli import main
from neuro.converters import convert
from neuro.core.errors import ParameterError
from neuro.energy import language
from neuro.energy.language import language_model_report
from neuro.energy.rwkv_rules import MIX_MAC, WKV_EXP, WKV_MAC
from neuro.io import save_model
from neuro.models.rwkv import RWKVConfig, RWKVLM
from neuro.models.spikegpt import SpikeGPT, SpikeGPTConfig

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 4
CHARS = "".join(sorted(set(TEXT)))
D, F, V = 8, 16, len(CHARS)


@pytest.fixture(scope="module")
def rwkv():
    torch.manual_seed(0)
    m = RWKVLM(RWKVConfig(vocab_size=V, d_model=D, n_layer=1, d_ff=F, vocab_chars=CHARS))
    with torch.no_grad():  # the zero-initialised projections drawn at random, so every path carries signal
        for lin in (m.blocks[0].att.output, m.blocks[0].ffn.value, m.blocks[0].ffn.receptance):
            torch.nn.init.normal_(lin.weight, 0.0, 0.5)
        torch.nn.init.normal_(m.emb.weight, 0.0, 1.0)
    return m.eval()


@pytest.fixture(scope="module")
def snn(rwkv):
    ids = torch.tensor([CHARS.index(c) for c in TEXT])[None]
    return convert(rwkv, ids, timesteps=4)


def test_float_rwkv_counts_by_hand(rwkv):
    L = 10
    rep = language_model_report(rwkv, TEXT, "45nm", max_chars=L)
    layers = rep.counts.layers
    dense = {n: l.total("mac_dense") for n, l in layers.items()}
    mac = {n: l.total("mac") for n, l in layers.items()}
    nl = {n: l.total("nonlinear") for n, l in layers.items()}
    for p in ("key", "value", "receptance", "output"):
        assert dense[f"blocks.0.att.{p}"] == L * D * D
    assert dense["blocks.0.ffn.key"] == L * D * F == dense["blocks.0.ffn.value"]
    assert dense["blocks.0.ffn.receptance"] == L * D * D and dense["head"] == L * D * V
    # WKV: 4 exponentials, 6 products and a division per channel and token
    assert mac["blocks.0.att.wkv"] == L * D * 7 == L * D * WKV_MAC
    assert nl["blocks.0.att.wkv"] == L * D * 4 == L * D * WKV_EXP
    assert nl["blocks.0.att.sigmoid"] == L * D and mac["blocks.0.att.gate"] == L * D
    assert nl["blocks.0.ffn.act"] == L * F == mac["blocks.0.ffn.act"]  # relu and its square
    assert nl["blocks.0.ffn.sigmoid"] == L * D and mac["blocks.0.ffn.gate"] == L * D
    for ln in ("ln_in", "blocks.0.ln1", "blocks.0.ln2", "ln_out"):
        assert mac[ln] == 3 * L * D and nl[ln] == L
    # token-shift interpolations mu x + (1 - mu) x_prev: 2 MACs per element, 3 mixes (k, v, r) and 2 (k, r)
    assert mac["blocks.0.att.mix"] == MIX_MAC * 3 * L * D == 2 * 3 * L * D
    assert mac["blocks.0.ffn.mix"] == 2 * 2 * L * D
    names = list(layers)
    assert names.index("blocks.0.att.mix") == names.index("blocks.0.att.shift") - 1
    assert layers["blocks.0.att.shift"].total("mac") == 0 and rep.counts.total("ac") == 0
    # the report of the float model alone: per token, no ANN side
    d = rep.to_dict()
    assert d["tokens"] == L and "ann" not in d and "ann_per_token_j" not in d["targets"]["45nm"]
    assert d["per_token"]["synops_mac"] == pytest.approx(rep.counts.total("mac") / L)


def test_converted_rwkv_report_per_token(snn, rwkv):
    rep = language_model_report(snn, TEXT, "45nm,loihi1", ann=rwkv, max_chars=40)
    d = rep.to_dict()
    assert d["tokens"] == 40 and d["synops_ac"] > 0 and d["spikes"] > 0
    for t in d["targets"].values():
        assert t["per_token_j"] == pytest.approx(t["energy_j"] / 40)
        assert t["ann_per_token_j"] == pytest.approx(t["ann_energy_j"] / 40)
    # the converted model folds the mixes into its weights; the float original pays them
    assert "blocks.0.att.mix" in rep.ann.layers and not any(n.endswith(".mix") for n in rep.counts.layers)
    assert rep.ann.layers["head"].total("mac_dense") == 40 * D * V
    # per-layer rows: the WKV's non-accumulate work, per step 3 evaluations and once per token 2 more
    wkv = rep.counts.layers["blocks.0.att.wkv"]
    T = snn.timesteps
    assert wkv.total("nonlinear") == 40 * D * (3 * T + 2) and wkv.total("mac") == 40 * D * (3 * T + 3)
    # default ANN side: a float RWKV of the same architecture, counted on the same 40 tokens
    rep2 = language_model_report(snn, TEXT, "45nm", max_chars=40)
    assert rep2.ann.total("mac_dense") == rep.ann.total("mac_dense")


def test_streaming_windows_carry_the_state(snn, monkeypatch):
    """40 tokens in windows of 16 (state carried) count exactly as one window of 40."""
    one = language_model_report(snn, TEXT, "45nm", max_chars=40).counts
    monkeypatch.setattr(language, "RWKV_WINDOW", 16)
    split = language_model_report(snn, TEXT, "45nm", max_chars=40).counts
    for op in ("ac", "mac", "spike", "nonlinear", "neuron_update_active"):
        assert split.total(op) == one.total(op)
    assert split.layers["blocks.0.att.wkv"].steps == 3 * snn.timesteps  # three decode_step calls


def test_energy_cli_on_rwkv_folders(snn, rwkv, tmp_path, capsys):
    save_model(rwkv, tmp_path / "rwkv")
    save_model(snn, tmp_path / "snn")
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    rc = main(["energy", str(tmp_path / "snn"), "--input", str(tmp_path / "text.txt"), "--ann", str(tmp_path / "rwkv"),
               "--max-chars", "24", "--targets", "45nm,gpu", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["tokens"] == 24 and set(d["targets"]) == {"45nm", "gpu"}
    assert d["per_token"]["synops_ac"] == pytest.approx(d["synops_ac"] / 24)
    for t in d["targets"].values():
        assert t["per_token_j"] == pytest.approx(t["energy_j"] / 24)
        assert t["ann_per_token_j"] == pytest.approx(t["ann_energy_j"] / 24)
    rows = {r["name"]: r for r in d["layers"]}
    assert rows["blocks.0.att.wkv"]["type"] == "SpikingWKV" and rows["blocks.0.att.key"]["ac"] > 0
    # the float folder alone
    assert main(["energy", str(tmp_path / "rwkv"), "--input", str(tmp_path / "text.txt"), "--max-chars", "24",
                 "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["tokens"] == 24 and f["synops_ac"] == 0 and f["synops_mac"] > 0
    assert {r["name"]: r for r in f["layers"]}["blocks.0.att.mix"]["mac"] == 2 * 3 * 24 * D
    # an empty text is refused (typed error, exit code 2), in the CLI and in the function
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    assert main(["energy", str(tmp_path / "snn"), "--input", str(tmp_path / "empty.txt")]) == 2
    with pytest.raises(ParameterError, match="non-empty"):
        language_model_report(snn, "", "45nm")


def test_spikegpt_report_against_a_float_rwkv():
    torch.manual_seed(0)
    m = SpikeGPT(SpikeGPTConfig(vocab_size=V, d_model=D, n_layer=1, vocab_chars=CHARS)).eval()
    rep = language_model_report(m, TEXT, "45nm", max_chars=20)
    d = rep.to_dict()
    assert d["tokens"] == 20 and d["neuron_updates"] == 20 * 2 * D  # two LIF layers of D per block and token
    assert rep.ann.source == "ANN original" and rep.ann.layers["blocks.0.att.mix"].total("mac") == 2 * 3 * 20 * D
    assert rep.counts.layers["blocks.0.att.wkv"].total("mac") == 20 * D * WKV_MAC


def test_bad_inputs_are_typed_errors(snn, rwkv):
    from neuro.core.errors import UnsupportedLayerError
    from neuro.energy.rwkv_rules import token_shift_mixes

    counts = language_model_report(rwkv, TEXT, "45nm", max_chars=4).counts
    with pytest.raises(ParameterError, match="tokens"):
        token_shift_mixes(counts, rwkv, 0)
    with pytest.raises(UnsupportedLayerError, match="Linear"):
        language_model_report(snn, TEXT, "45nm", ann=torch.nn.Linear(2, 2), max_chars=4)
    with pytest.raises(ParameterError, match="max-chars"):
        language_model_report(snn, TEXT, "45nm", max_chars=1)
