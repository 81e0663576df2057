"""The seed's sketch (two crash fixes only) ignores token order; PosAttn's sinusoidal baseline does not."""

import torch
from conftest import batch_of, build_model, random_samples

from modeling_posattn.toolkit.seed_reference import MultiModalSelfAttention


def test_seed_reference_runs_and_is_permutation_equivariant():
    torch.manual_seed(0)
    block = MultiModalSelfAttention(d_model=32, num_heads=4).eval()
    x = torch.randn(2, 11, 32)
    order = torch.randperm(11)
    with torch.no_grad():
        out, out_permuted = block(x), block(x[:, order])
    assert out.shape == (2, 11, 32)
    # The flaw: permuting the tokens only permutes the output. Position is ignored.
    torch.testing.assert_close(out_permuted, out[:, order], atol=1e-6, rtol=0)
    # Why: the sequence-first buffer is indexed by batch size, so each token gets the encoding of its batch index.
    added = block.positional_encoding(torch.zeros(2, 11, 32))
    assert torch.equal(added[0], added[0, :1].expand(11, 32))


def test_posattn_sinusoidal_fix_is_not_permutation_equivariant():
    model = build_model(absolute_position_encoding="sinusoidal", num_hidden_layers=1)
    sample = random_samples(lengths=((11, 0, 0),))[0]
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(**batch_of([sample])).last_hidden_state[0]
        out_permuted = model(**batch_of([{"audio": sample["audio"][order.numpy()]}])).last_hidden_state[0]
    assert not torch.allclose(out_permuted, out[order], atol=1e-4)


def test_seed_reference_classifier_runs_unpadded_and_refuses_padding():
    from modeling_posattn.toolkit.seed_baseline import SeedReferenceForSequenceClassification
    from conftest import tiny_config

    model = SeedReferenceForSequenceClassification(tiny_config(absolute_position_encoding="sinusoidal"))
    assert model.config.absolute_position_encoding == "none"  # the seed's own (position-blind) encoding is the only one
    output = model(**batch_of(random_samples(lengths=((10, 3, 2),))), labels=torch.tensor([1]))
    assert torch.isfinite(output.loss)
    import pytest

    with pytest.raises(ValueError, match="no padding mask"):
        model(**batch_of(random_samples()))
