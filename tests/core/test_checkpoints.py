"""Checkpoint formats: parity with Hugging Face transformers, mamba_ssm folders, our own format, errors."""
import json

import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig, MambaForTask
from mambatune.core.checkpoints import CheckpointError, export_hf, load_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")

BACKENDS = ["reference", "chunked"]


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                                   conv_kernel=4, time_step_rank=4, tie_word_embeddings=True)
    model = transformers.MambaForCausalLM(cfg).eval()
    with torch.no_grad():  # make every parameter non-trivial, so a mix-up cannot hide
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 64, (2, 29), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_hf_parity(hf_model, hf_dir, ids, backend):
    ours = load_pretrained(hf_dir, backend=backend).eval()
    with torch.no_grad():
        assert_close(ours(ids).logits, hf_model(ids).logits, 1e-5)
    assert ours.load_report.source_format == "hf"


def test_export_to_hf_round_trip(hf_model, hf_dir, ids, tmp_path):
    ours = load_pretrained(hf_dir).eval()
    with torch.no_grad():
        ours.backbone.layers[0].mixer.D.add_(0.5)  # a change that must survive the export
        expected = ours(ids).logits
    export_hf(ours, tmp_path)
    back = transformers.MambaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert_close(back(ids).logits, expected, 1e-5)


def test_untied_hf_head(tmp_path, ids):
    torch.manual_seed(2)
    cfg = transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=1,
                                   tie_word_embeddings=False)
    hf = transformers.MambaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path).eval()
    assert not ours.head.tied
    with torch.no_grad():
        assert_close(ours(ids).logits, hf(ids).logits, 1e-5)


def test_mamba_ssm_folder(hf_model, ids, tmp_path):
    """An original mamba_ssm folder: config.json with d_model/n_layer/ssm_cfg, pytorch_model.bin, padded vocab."""
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v.clone() for k, v in hf_model.state_dict().items()}
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({
        "d_model": 32, "n_layer": 2, "vocab_size": 61, "pad_vocab_size_multiple": 8,
        "ssm_cfg": {"d_state": 8, "d_conv": 4, "expand": 2, "dt_rank": 4}, "rms_norm": True,
        "residual_in_fp32": True, "fused_add_norm": True, "tie_embeddings": True,
    }))
    ours = load_pretrained(tmp_path).eval()
    assert ours.config.padded_vocab_size == 64 and ours.load_report.source_format == "mamba_ssm"
    with torch.no_grad():
        assert_close(ours(ids.clamp(max=60)).logits, hf_model(ids.clamp(max=60)).logits, 1e-5)


def test_own_format_round_trip_with_head(hf_dir, ids, tmp_path):
    clf = load_pretrained(hf_dir, head={"kind": "classification", "num_labels": 3, "pooling": "last"})
    assert clf.load_report.newly_initialized == ["head.score.bias", "head.score.weight"]
    save_pretrained(clf, tmp_path)
    again = load_pretrained(tmp_path)
    assert again.load_report.newly_initialized == []
    clf.eval(), again.eval()
    with torch.no_grad():
        assert_close(again(ids).logits, clf(ids).logits, 0)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_bidirectional_own_format_round_trip(tmp_path):
    cfg = MambaConfig(d_model=16, n_layer=2, vocab_size=10, d_state=4, bidirectional=True, tie_bidirectional=True)
    m = MambaForTask(cfg).eval()
    save_pretrained(m, tmp_path)
    m2 = load_pretrained(tmp_path).eval()
    x = torch.randint(0, 10, (1, 12))
    with torch.no_grad():
        assert_close(m2(x).logits, m(x).logits, 0)


def test_missing_and_mismatched_keys_are_listed(hf_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(hf_dir / "model.safetensors")
    sd.pop("backbone.layers.1.mixer.D")
    sd["backbone.layers.0.mixer.A_log"] = torch.zeros(3, 3)
    sd["backbone.extra.weight"] = torch.zeros(1)
    save_file(sd, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((hf_dir / "config.json").read_text())
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path)
    msg = str(err.value)
    assert "backbone.layers.1.mixer.D" in msg and "backbone.extra.weight" in msg and "A_log" in msg


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"backbone.embedding.weight": Evil()}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 8, "n_layer": 1, "vocab_size": 8}))
    with pytest.raises(CheckpointError, match="never unpickles code"):
        load_pretrained(tmp_path)


def test_offline_hub_id_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline|could not download"):
        load_pretrained("state-spaces/definitely-not-here-hf")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="neither"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba2"}))
    with pytest.raises(CheckpointError, match="Mamba-2"):
        load_pretrained(tmp_path)


def test_export_refuses_non_lm(tmp_path):
    from mambatune.core import SequenceClassificationHead

    m = MambaForTask(MambaConfig(d_model=16, n_layer=1, vocab_size=8), head=SequenceClassificationHead(16, 2))
    with pytest.raises(CheckpointError, match="needs a language model"):
        export_hf(m, tmp_path)


def caduceus_folder(model: MambaForTask, path, rcps=False):
    """``model`` in the Caduceus HF layout, with a 12-id complement map (A 7 <-> T 10, C 8 <-> G 9)."""
    from helpers import write_caduceus

    write_caduceus(model, path, rcps=rcps,
                   complement={str(i): j for i, j in enumerate([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11])})


def test_caduceus_folder(tmp_path):
    cfg = MambaConfig(d_model=16, n_layer=2, vocab_size=12, d_state=4, bidirectional=True,
                      bidirectional_strategy="mul", tie_bidirectional=True, residual_in_fp32=False)
    torch.manual_seed(5)
    src = MambaForTask(cfg).eval()
    caduceus_folder(src, tmp_path)
    ours = load_pretrained(tmp_path).eval()
    assert ours.config.bidirectional and ours.config.bidirectional_strategy == "mul"
    assert ours.config.complement_map[7] == 10
    x = torch.randint(7, 11, (2, 25))
    with torch.no_grad():
        assert_close(ours(x).logits, src(x).logits, 0)


def test_caduceus_rcps_is_refused_clearly(tmp_path):
    cfg = MambaConfig(d_model=16, n_layer=1, vocab_size=12, d_state=4, bidirectional=True)
    caduceus_folder(MambaForTask(cfg), tmp_path, rcps=True)
    with pytest.raises(CheckpointError, match="RCPS"):
        load_pretrained(tmp_path)


def tiny_folder(path):
    m = MambaForTask(MambaConfig(d_model=16, n_layer=1, vocab_size=8, d_state=4))
    export_hf(m, path)
    return path


@pytest.mark.parametrize("shard", ["../outside.safetensors", "ABS", "sub/../../outside.safetensors"])
def test_index_entries_outside_the_folder_are_refused(tmp_path, shard):
    from safetensors.torch import load_file, save_file

    model_dir = tiny_folder(tmp_path / "model")
    sd = load_file(model_dir / "model.safetensors")
    save_file(sd, tmp_path / "outside.safetensors")
    (model_dir / "model.safetensors").unlink()
    shard = str(tmp_path / "outside.safetensors") if shard == "ABS" else shard
    (model_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: shard for k in sd}}))
    with pytest.raises(CheckpointError, match="outside the model folder"):
        load_pretrained(model_dir)


def test_sharded_index_inside_the_folder_loads(tmp_path):
    from safetensors.torch import load_file, save_file

    model_dir = tiny_folder(tmp_path / "model")
    sd = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    names = sorted(sd)
    save_file({k: sd[k] for k in names[:3]}, model_dir / "a.safetensors")
    save_file({k: sd[k] for k in names[3:]}, model_dir / "b.safetensors")
    weight_map = {k: ("a.safetensors" if i < 3 else "b.safetensors") for i, k in enumerate(names)}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert load_pretrained(model_dir).load_report.source_format == "hf"


@pytest.mark.parametrize("path", ["models/my-model", "./my-model", "../nowhere/model", "~/no-such-mambatune-model"])
def test_missing_local_path_is_no_such_folder(tmp_path, monkeypatch, path):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("tried the hub"))
    with pytest.raises(CheckpointError, match="no such folder"):
        load_pretrained(path)


def test_nonfinite_weights_are_refused_at_load(tmp_path):
    from safetensors.torch import load_file, save_file

    model_dir = tiny_folder(tmp_path / "model")
    sd = load_file(model_dir / "model.safetensors")
    sd["backbone.layers.0.mixer.D"][3] = float("nan")
    sd["backbone.norm_f.weight"][0] = float("inf")
    save_file(sd, model_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match="non-finite") as err:
        load_pretrained(model_dir)
    assert "backbone.layers.0.mixer.D (1 of" in str(err.value) and "backbone.norm_f.weight" in str(err.value)
    model = load_pretrained(model_dir, allow_nonfinite=True)
    assert torch.isnan(model.backbone.layers[0].mixer.D).any()


def test_nonfinite_weights_are_never_saved(tmp_path):
    m = MambaForTask(MambaConfig(d_model=16, n_layer=1, vocab_size=8, d_state=4))
    with torch.no_grad():
        m.backbone.layers[0].mixer.A_log[0, 0] = float("inf")
    with pytest.raises(CheckpointError, match=r"A_log \(1 of .*nothing was written"):
        save_pretrained(m, tmp_path / "out")
    assert not (tmp_path / "out").exists()
