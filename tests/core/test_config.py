import pytest

from mambatune.core import ConfigError, MambaConfig


def test_derived_values():
    c = MambaConfig(d_model=768, n_layer=24, vocab_size=50277)
    assert c.dt_rank == 48 and c.d_inner == 1536 and c.padded_vocab_size == 50280


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(d_model=0), "d_model must be a positive integer"),
        (dict(d_state=300), "d_state must be at most 256"),
        (dict(d_conv=5), "d_conv must be 1..4"),
        (dict(dt_min=0.2, dt_max=0.1), "dt_min <= dt_max"),
        (dict(dt_rank="big"), "dt_rank must be 'auto'"),
        (dict(bidirectional_strategy="concat"), "bidirectional_strategy must be one of"),
        (dict(rc_equivariant="rcps"), "needs complement_map"),
        (dict(rc_equivariant="rcps", vocab_size=4, complement_map=[1, 0, 3]), "has 3 entries"),
        (dict(rc_equivariant="rcps", vocab_size=3, complement_map=[1, 2, 0]), "involution"),
        (dict(backend="cuda"), "backend must be one of"),
        (dict(pad_token_id=99, vocab_size=10), "outside the vocabulary"),
    ],
)
def test_invalid_configs_raise(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        MambaConfig(**kw)


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'd_state'"):
        MambaConfig.from_dict({"d_stat": 16})


def test_round_trip():
    c = MambaConfig(d_model=32, n_layer=2, vocab_size=10, bidirectional=True)
    assert MambaConfig.from_dict(c.to_dict()) == c
