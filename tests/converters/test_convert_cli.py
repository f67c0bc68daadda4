"""``neuro convert``: neuro and Hugging Face folders in, a model folder out that loads back with equal
outputs; the JSON report; bad input is a typed error (exit code 2) that leaves no output folder."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from neuro.cli import main
from neuro.converters import SpikingTransformer, convert
from neuro.converters.huggingface import import_transformers
from neuro.io import load_model, save_model
from neuro.models.transformer import TransformerLM, config_for

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 6


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("char")
    chars = "".join(sorted(set(TEXT)))
    cfg = config_for("gpt", vocab_size=len(chars), d_model=16, n_layer=1, n_head=2, max_seq=16, vocab_chars=chars)
    torch.manual_seed(0)
    save_model(TransformerLM(cfg), d / "gpt")
    (d / "calib.txt").write_text(TEXT, encoding="utf-8")
    return d


def _run(capsys, *argv):
    code = main(["convert", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_convert_neuro_folder_json_and_round_trip(char_model, tmp_path, capsys):
    out = tmp_path / "snn"
    code, stdout, _ = _run(capsys, char_model / "gpt", "--timesteps", 6, "--calibration", char_model / "calib.txt",
                           "--out", out, "--json", "--eval", char_model / "calib.txt", "--eval-chars", 200)
    assert code == 0
    doc = json.loads(stdout)
    for key in ("ann_perplexity", "twin_perplexity", "snn_perplexity", "timesteps", "unsupported_ops", "layers",
                "not_accumulate_only"):
        assert key in doc
    assert doc["timesteps"] == 6 and doc["unsupported_ops"] == [] and doc["snn_equals_twin"] is True
    assert doc["snn_perplexity"] == pytest.approx(doc["twin_perplexity"], rel=1e-9)
    assert {r["op"] for r in doc["not_accumulate_only"]} >= {"SpikingSoftmax", "SpikingLayerNorm"}
    back = load_model(out)
    assert isinstance(back, SpikingTransformer)
    model = load_model(char_model / "gpt")
    same = convert(model, char_model / "calib.txt", timesteps=6)
    x = torch.randint(0, model.config.vocab_size, (2, 10))
    assert torch.equal(back(x), same(x))


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    tf = import_transformers()
    d = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    gpt = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16,
                                           bos_token_id=0, eos_token_id=0)).eval()
    gpt.save_pretrained(d / "gpt2")
    (d / "gpt2_pickle").mkdir()
    (d / "gpt2_pickle" / "config.json").write_text((d / "gpt2" / "config.json").read_text())
    torch.save(gpt.state_dict(), d / "gpt2_pickle" / "pytorch_model.bin")
    bert = tf.BertModel(tf.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=16)).eval()
    bert.save_pretrained(d / "bert")
    np.save(d / "ids.npy", np.random.default_rng(0).integers(0, 50, size=(4, 16)))
    return d


def test_convert_hugging_face_decoder_and_encoder(hf_folders, tmp_path, capsys):
    code, stdout, _ = _run(capsys, hf_folders / "gpt2", "-T", 8, "--calibration", hf_folders / "ids.npy",
                           "--out", tmp_path / "g", "--json", "--eval-chars", 64)
    assert code == 0
    doc = json.loads(stdout)
    assert doc["arch"] == "gpt" and doc["snn_equals_twin"] and doc["cosine_similarity"] > 0.99
    code, stdout, _ = _run(capsys, hf_folders / "bert", "-T", 8, "--calibration", hf_folders / "ids.npy",
                           "--out", tmp_path / "b", "--json", "--eval-chars", 64)
    assert code == 0
    doc = json.loads(stdout)
    assert doc["metric"] == "cosine_similarity" and "snn_perplexity" not in doc and doc["cosine_similarity"] > 0.99
    assert isinstance(load_model(tmp_path / "b"), SpikingTransformer)


def test_pickle_checkpoint_needs_the_trust_flag(hf_folders, tmp_path, capsys):
    out = tmp_path / "p"
    code, _, err = _run(capsys, hf_folders / "gpt2_pickle", "--calibration", hf_folders / "ids.npy", "--out", out)
    assert code == 2 and "trust_pickle" in err and not out.exists()
    code, _, _ = _run(capsys, hf_folders / "gpt2_pickle", "--calibration", hf_folders / "ids.npy", "--out", out,
                      "--trust-pickle", "-T", 4, "--eval-chars", 32)
    assert code == 0 and out.is_dir()


def test_bad_inputs_leave_no_output_folder(hf_folders, char_model, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((hf_folders / "gpt2" / "config.json").read_text())
    out = tmp_path / "o"
    code, _, err = _run(capsys, bad, "--calibration", hf_folders / "ids.npy", "--out", out)  # no weights
    assert code == 2 and not out.exists()
    w = load_file(str(hf_folders / "gpt2" / "model.safetensors"))
    w["transformer.wte.weight"] = w["transformer.wte.weight"][:, :8].contiguous()
    save_file(w, str(bad / "model.safetensors"), metadata={"format": "pt"})
    code, _, err = _run(capsys, bad, "--calibration", hf_folders / "ids.npy", "--out", out)  # mismatched shape
    assert code == 2 and "transformer.wte.weight" in err and not out.exists()
    code, _, err = _run(capsys, char_model / "gpt", "-T", 0, "--calibration", char_model / "calib.txt", "--out", out)
    assert code == 2 and "timesteps" in err and not out.exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    code, _, err = _run(capsys, char_model / "gpt", "--calibration", empty, "--out", out)
    assert code == 2 and "empty" in err and not out.exists()
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("To be, or not to be: ZEBRA", encoding="utf-8")
    code, _, err = _run(capsys, char_model / "gpt", "--calibration", unknown, "--out", out)
    assert code == 2 and "not in the model's vocabulary" in err and not out.exists()


def test_demo_conversion_reports_per_T_plots_and_generates(tmp_path):
    from neuro.converters import demo_conversion
    from neuro.data import tinyshakespeare

    chars = "".join(tinyshakespeare().tokenizer.chars)
    cfg = config_for("gpt", vocab_size=len(chars), d_model=16, n_layer=1, n_head=2, max_seq=16, vocab_chars=chars)
    torch.manual_seed(0)
    folder = save_model(TransformerLM(cfg), tmp_path / "gpt")
    res = demo_conversion(tmp_path / "demo", timesteps=(2, 6), eval_chars=80, progress=False, model_dir=folder,
                          calib_chars=256, n_lines=1, line_chars=12)
    assert [r["timesteps"] for r in res["rows"]] == [2, 6] and res["eval_chars"] == 80
    for r in res["rows"]:
        assert r["snn_equals_twin"] and r["snn_perplexity"] == pytest.approx(r["twin_perplexity"], rel=1e-9)
    gaps = [abs(r["snn_perplexity"] / r["ann_perplexity"] - 1) for r in res["rows"]]
    assert gaps[1] < gaps[0]
    assert (tmp_path / "demo" / "fidelity.png").stat().st_size > 1000
    assert len(res["samples"]) == 1 and res["samples"][0].startswith("ROMEO:\n") and len(res["samples"][0]) == 19


def test_headroom_option_and_its_report(char_model, tmp_path, capsys):
    out = tmp_path / "snn"
    args = ("--timesteps", 5, "--calibration", char_model / "calib.txt", "--eval", char_model / "calib.txt",
            "--eval-chars", 100, "--json")
    code, stdout, _ = _run(capsys, char_model / "gpt", "--out", out, *args)
    doc = json.loads(stdout)
    choice = doc["headroom_choice"]
    assert code == 0 and doc["headroom_bits"] == choice["headroom_bits"] in (0, 1)
    assert set(choice["scores"]) == {"0", "1"} and choice["held_out_tokens"] > 0
    assert load_model(out).params.headroom_bits == doc["headroom_bits"]
    code, stdout, _ = _run(capsys, char_model / "gpt", "--out", tmp_path / "fixed", "--headroom-bits", 2, *args)
    doc = json.loads(stdout)
    assert code == 0 and doc["headroom_bits"] == 2 and doc["headroom_choice"] is None
    code, _, err = _run(capsys, char_model / "gpt", "--out", tmp_path / "bad", "--headroom-bits", 9, *args)
    assert code == 2 and "headroom_bits" in err and not (tmp_path / "bad").exists()
