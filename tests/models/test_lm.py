"""The shared language-model checks (neuro.models.lm): token ids, config records, state types."""
import pytest
import torch

from neuro.core.errors import ParameterError, ShapeError
from neuro.io import load_model, save_model
from neuro.models import RWKVConfig, RWKVLM, SpikeGPT, SpikeGPTConfig, TransformerLM, config_for
from neuro.models.lm import check_token_ids


def test_check_token_ids_names_owner_and_value():
    check_token_ids("M", torch.zeros(2, 5, dtype=torch.long), start=3, max_seq=8)  # positions 3..7 fit
    for bad in ([[1, 2]], torch.zeros(2, 5), torch.zeros(5, dtype=torch.long)):
        with pytest.raises(ShapeError, match="M.*integer tensor"):
            check_token_ids("M", bad)
    with pytest.raises(ShapeError, match=r"L >= 1, got torch.int64 \(2, 0\)"):
        check_token_ids("M", torch.zeros(2, 0, dtype=torch.long), min_len=1)
    with pytest.raises(ShapeError, match=r"positions 4\.\.8 exceed max_seq = 8"):
        check_token_ids("M", torch.zeros(2, 5, dtype=torch.long), start=4, max_seq=8)


MODELS = [(TransformerLM, config_for("gpt", vocab_size=11, d_model=16, n_layer=1, n_head=2, max_seq=8)),
          (RWKVLM, RWKVConfig(vocab_size=11, d_model=16, n_layer=2)),
          (SpikeGPT, SpikeGPTConfig(vocab_size=11, d_model=16, n_layer=2))]


@pytest.mark.parametrize("cls,cfg", MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_config_from_record_or_dict_round_trips(cls, cfg, tmp_path):
    a, b = cls(cfg), cls(cfg.to_dict())
    assert a.config == b.config and a.get_config() == cfg.to_dict()
    assert a.num_parameters() == sum(p.numel() for p in a.parameters()) > 0
    with pytest.raises(ParameterError, match=f"{cls.__name__}.*config.*an instance of {type(cfg).__name__}"):
        cls([cfg])
    back = load_model(save_model(a, tmp_path / "m"))
    x = torch.randint(0, 11, (2, 6))
    assert type(back) is cls and torch.equal(back.eval()(x), a.eval()(x))


@pytest.mark.parametrize("cls,cfg", MODELS[1:], ids=lambda v: getattr(v, "__name__", ""))
def test_streaming_equals_sequence_and_checks_its_state(cls, cfg):
    m = cls(cfg).eval()
    x = torch.randint(0, 11, (2, 7))
    state = m.init_cache(2)
    y1, state = m.decode_step(x[:, :3], state)
    y2, state = m.decode_step(x[:, 3:], state)
    assert state.length == 7 and torch.allclose(torch.cat([y1, y2], 1), m(x), atol=1e-5)
    with pytest.raises(ParameterError, match=f"{cls.__name__}.decode_step.*state.*from init_cache"):
        m.decode_step(x, (state,))
    with pytest.raises(ShapeError, match="idx_new has batch 1, the state 2"):
        m.decode_step(x[:1], state)
    with pytest.raises(ShapeError, match="integer tensor"):
        m(x.float())
