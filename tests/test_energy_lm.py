"""Energy of language models: the float reference Transformer's rules against hand counts, and
``neuro energy`` on a converted (spiking) model folder, per token, with the float original."""
import json

import pytest
import torch

from neuro.cli import main
from neuro.converters import convert
from neuro.energy import OpCounter
from neuro.energy.language import language_model_report
from neuro.io import save_model
from neuro.models.transformer import TransformerLM, config_for

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 4
CHARS = "".join(sorted(set(TEXT)))


def calibration_ids():
    return torch.tensor([CHARS.index(c) for c in TEXT])[None]


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    cfg = config_for("gpt", vocab_size=len(CHARS), d_model=16, n_layer=1, n_head=2, d_ff=32, max_seq=16,
                     vocab_chars=CHARS)
    return TransformerLM(cfg).eval()


def test_float_transformer_counts_by_hand(lm):
    L, D, F, H = 8, 16, 32, 2
    ids = torch.arange(L)[None] % len(CHARS)
    with torch.no_grad(), OpCounter(lm, multistep=False) as c:
        lm(ids)
    layers = c.counts().layers
    mac = {n: l.total("mac") for n, l in layers.items()}
    assert mac["blocks.0.attn.q"] == L * D * D and mac["blocks.0.mlp.fc"] == L * D * F
    assert mac["blocks.0.attn.qk"] == H * L * L * (D // H) == mac["blocks.0.attn.pv"]
    assert mac["blocks.0.attn.softmax"] == H * L * L
    assert mac["blocks.0.norm1"] == 3 * L * D and layers["blocks.0.norm1"].total("nonlinear") == L
    assert layers["blocks.0.mlp.act"].total("nonlinear") == L * F
    assert mac["head"] == L * D * len(CHARS)


def test_converted_model_report_per_token(lm):
    snn = convert(lm, calibration_ids(), timesteps=4)
    rep = language_model_report(snn, TEXT, "45nm,loihi1", ann=lm, max_chars=40)
    d = rep.to_dict()
    assert d["tokens"] == 40 and d["synops_ac"] > 0
    for t in d["targets"].values():
        assert t["per_token_j"] == pytest.approx(t["energy_j"] / 40)
        assert t["ann_per_token_j"] == pytest.approx(t["ann_energy_j"] / 40)
    # 40 characters run as windows of max_seq = 16: 16 + 16 + 8 tokens through the float head
    assert d["ann"]["synops_mac"] > 0 and rep.ann.layers["head"].total("mac") == 40 * 16 * len(CHARS)


def test_energy_cli_on_a_converted_folder(lm, tmp_path, capsys):
    save_model(lm, tmp_path / "gpt")
    save_model(convert(lm, calibration_ids(), timesteps=4), tmp_path / "snn")
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    rc = main(["energy", str(tmp_path / "snn"), "--input", str(tmp_path / "text.txt"), "--ann", str(tmp_path / "gpt"),
               "--max-chars", "24", "--targets", "45nm,gpu", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["tokens"] == 24 and set(d["targets"]) == {"45nm", "gpu"}
    assert all("ann_energy_j" in t and "per_token_j" in t for t in d["targets"].values())
    # a language model needs a text input
    (tmp_path / "x.npy").write_bytes(b"")
    assert main(["energy", str(tmp_path / "snn"), "--input", str(tmp_path / "x.npy")]) == 2
    assert main(["energy", str(tmp_path / "snn"), "--input", str(tmp_path / "text.txt"), "--max-chars", "1"]) == 2
