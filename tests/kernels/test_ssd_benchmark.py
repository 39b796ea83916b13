"""benchmarks/ssd.py's CPU part: the packer keeps every document once, and a packed batch trains on exactly
the targets a padded batch does (same summed loss), so its throughput row compares like with like."""
import torch

from mambatune.benchmarks import ssd as bench
from mambatune.core import MambaConfig
from mambatune.core.heads import MambaForTask


def test_pack_rows_places_every_document_once_within_the_row():
    lengths = bench.mixed_lengths(40, 3, 30, seed=1)
    rows = bench.pack_rows(lengths, 30)
    assert sorted(i for r in rows for i in r) == list(range(40))
    assert all(sum(lengths[i] for i in r) <= 30 for r in rows)
    assert len(rows) <= 2 * -(-sum(lengths) // 30)  # first-fit decreasing stays within twice the bound


def summed_loss(model, batches):
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            n = int(((b["labels"][:, 1:] != -100) & (b["attention_mask"][:, 1:] == 1)).sum())
            total += float(model(**b).loss) * n
            count += n
    return total, count


def test_packed_batches_train_on_the_same_targets_as_padded_ones():
    torch.manual_seed(0)
    model = MambaForTask(MambaConfig(arch="mamba2", d_model=16, n_layer=2, vocab_size=20, d_state=8, headdim=8,
                                     chunk_size=8, expand=2)).eval()
    g = torch.Generator().manual_seed(3)
    docs = [torch.randint(1, 20, (int(n),), generator=g) for n in bench.mixed_lengths(9, 2, 17, seed=4)]
    padded, packed = bench.padded_and_packed(docs, batch=3, row_length=24)
    assert sum(int(b["attention_mask"].sum()) for b in packed) == sum(len(d) for d in docs)
    (loss_pad, n_pad), (loss_pack, n_pack) = summed_loss(model, padded), summed_loss(model, packed)
    assert n_pad == n_pack == sum(len(d) - 1 for d in docs)
    assert abs(loss_pad - loss_pack) < 1e-4 * n_pad
