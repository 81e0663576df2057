"""REFERENCE BASELINE, NOT PART OF THE MODEL: the seed document's code sketch, kept faithful for comparison.

Copied from `shared/seed/000_d00c77061fd4b0e2.txt` with exactly two changes, the crash fixes listed in SEED.md:
1. `import math` added (the sketch raises NameError without it);
2. the output reshape uses the sequence length saved before the heads were moved (`seq_len`), instead of reading
   `x.size(1)` afterwards, which is the number of heads.

Everything else is left as written, flaws included: the encoding buffer is sequence-first, `(max_len, 1, d)`, while the
attention is batch-first, so `pe[:x.size(0)]` adds the encoding of the *batch index* to every token. The module is
therefore exactly permutation-equivariant: it ignores token order (`tests/test_seed_reference.py` shows this next to
PosAttn's fix). It also materialises the L x L score matrix, has no mask, no dropout and a 5000 maximum.
"""

import math  # crash fix 1

import torch
import torch.nn as nn
import torch.nn.functional as F


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=5000):
        super(PositionalEncoding, self).__init__()
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        pe = pe.unsqueeze(0).transpose(0, 1)
        self.register_buffer("pe", pe)

    def forward(self, x):
        x = x + self.pe[: x.size(0), :]
        return x


class MultiModalSelfAttention(nn.Module):
    def __init__(self, d_model, num_heads):
        super(MultiModalSelfAttention, self).__init__()
        self.embed_dim = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        assert self.head_dim * num_heads == d_model, "Embedding size needs to be divisible by num_heads"
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.positional_encoding = PositionalEncoding(d_model)

    def forward(self, x):
        x = self.positional_encoding(x)
        seq_len = x.size(1)  # crash fix 2 (used below instead of x.size(1) after the transpose)
        q = self.query(x).view(x.size(0), x.size(1), self.num_heads, self.head_dim).transpose(1, 2)
        k = self.key(x).view(x.size(0), x.size(1), self.num_heads, self.head_dim).transpose(1, 2)
        v = self.value(x).view(x.size(0), x.size(1), self.num_heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / (self.head_dim**0.5)
        attn = F.softmax(scores, dim=-1)
        x = torch.matmul(attn, v)
        x = x.transpose(1, 2).contiguous().view(x.size(0), seq_len, self.embed_dim)
        x = self.out(x)
        return x
