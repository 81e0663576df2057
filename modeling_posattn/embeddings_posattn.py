"""PosAttn's embeddings: every token's content (its modality's stem, or a token table), its modality's embedding, and
the absolute position encoding fused with them."""

import torch
from torch import nn

from .configuration_posattn import PosAttnConfig
from .grouped_posattn import (
    ModalityOrder,
    affine_width,
    aligned,
    bias_inputs,
    grouped_linear,
    grouped_path_allowed,
    plain_module,
    plain_module_of,
    stacked_affine,
)
from .positional_encodings import ABSOLUTE_POSITION_ENCODINGS, POSITION_FUSIONS, GatedFusion, TokenPositions
from .stems import STEMS, ConvStem, LinearStem, build_stem, own_frames, token_feature_dim


class PosAttnEmbeddings(nn.Module):
    r"""Content (each modality's stem, or token embeddings) + modality embedding, fused with the absolute encoding.

    With `config.unit_scale_embeddings`, content and position meet at the same scale whatever the stem, the encoding
    or its init: $c = \gamma_m \odot \mathrm{LN}(\mathrm{stem}_m(x)) + \beta_m$ (a LayerNorm per modality, no
    statistic across tokens) and $p = g \odot \mathrm{RMSNorm}(\mathrm{PE})$, both of RMS 1 at init. Without it,
    an std-0.02 Linear on standardised inputs gives content of RMS ~0.1 against 0.71 for a sinusoid, so position
    outweighs content ~7x at init (and a learned table starts ~5x below content): the encodings would not be compared on
    equal footing. TST multiplies content by sqrt(d) for the same reason (Zerveas et al., 2021).
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.modality_names = config.modality_names
        # each modality's token vocabulary (None for a feature modality) and packed feature width (0 for token ids):
        # what decides the content branch and what a stem is handed, whatever module (an adapter, a wrapper) stands in
        # the table's or the stem's place
        specs = [config.modality_spec(name) for name in config.modality_names]
        self.vocab_sizes = [spec.get("vocab_size") for spec in specs]
        self.feature_widths = [token_feature_dim(spec) for spec in specs]
        self.content = nn.ModuleList(
            build_stem(spec, config.hidden_size, eps=config.layer_norm_eps, act=config.hidden_act)
            if spec.get("input_dim") is not None
            else nn.Embedding(spec["vocab_size"], config.hidden_size)
            for spec in map(config.modality_spec, config.modality_names)
        )
        self.modality_embedding = nn.Embedding(config.num_modalities, config.hidden_size)
        self.unit_scale = config.unit_scale_embeddings
        self.layer_norm_eps = config.layer_norm_eps
        if self.unit_scale:
            # The LayerNorm's affine per modality, gathered by modality id: one normalisation over the packed batch.
            self.content_norm_weight = nn.Parameter(torch.ones(config.num_modalities, config.hidden_size))
            self.content_norm_bias = nn.Parameter(torch.zeros(config.num_modalities, config.hidden_size))
        encoding_class = ABSOLUTE_POSITION_ENCODINGS[config.absolute_position_encoding]
        self.position_encoding = encoding_class(config) if encoding_class is not None else None
        self.fusion = POSITION_FUSIONS[config.position_fusion](config) if encoding_class is not None else None
        self.encoding_norm = (
            nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
            if self.unit_scale and encoding_class is not None
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # a map per modality over every token (a Linear stem, the gated fusion's gate): only then is the batch sorted
        self.maps_per_modality = len(self.content) > 1 and (
            any(isinstance(module, LinearStem) for module in self.content) or isinstance(self.fusion, GatedFusion)
        )

    def modality_table(self, device: torch.device) -> torch.Tensor:
        """`(M, H)` modality embeddings: a plain `nn.Embedding`'s weight (`plain_module`); a hooked, wrapped or adapted
        one is called once per forward on every modality id (`arange(M)` on `device`, the batch's), so that what it adds
        applies; its hooks see those ids and the `(M, H)` table, not the batch's per-token ids."""
        embedding = self.modality_embedding
        if plain_module(embedding, nn.Embedding):
            return embedding.weight
        return embedding(torch.arange(len(self.content), device=device))

    def embed_content(
        self,
        input_values: torch.Tensor | None,
        input_ids: torch.Tensor | None,
        positions: TokenPositions,
        order: ModalityOrder | None = None,
        table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(B, L, H)`: every token's stem output (or token embedding), normalised per modality when `unit_scale`, plus
        its modality's embedding (`table`: `modality_table()`, computed here when not given)."""
        modality_ids = positions.modality_ids
        weight = self.modality_table(modality_ids.device) if table is None else table
        # One modality and no padding (learned in the value checks' host sync): every token is that modality's own, so
        # its module needs no masking.
        every_token_own = len(self.content) == 1 and positions.padded is False
        parts = []
        values = input_values.to(weight.dtype) if input_values is not None else None
        joins = [in_grouped_stems(module) for module in self.content]  # decided once: a hook may come or go mid-call
        grouped = self.grouped_linear_stems(values, positions, order, joins, weight.shape[-1])
        if grouped is not None:
            parts.append(grouped)
        # Every other modality's module runs over the whole packed sequence and zeroes what is not its own: no boolean
        # indexing, so no data-dependent shapes (torch.compile and torch.export trace one graph) and no host sync.
        for index, module in enumerate(self.content):
            selected = None if every_token_own else (modality_ids == index) & positions.mask
            if self.vocab_sizes[index] is not None:
                if input_ids is not None:
                    # other modalities' positions hold arbitrary ids: clamp them into the table, then drop them
                    # the table's own rows where it is a plain table (it may have grown: `set_input_embeddings`)
                    rows = module.num_embeddings if plain_module(module, nn.Embedding) else self.vocab_sizes[index]
                    ids = input_ids.clamp(0, rows - 1)
                    parts.append(module(ids) if selected is None else torch.where(selected[..., None], module(ids), 0.0))
            elif values is not None and (grouped is None or not joins[index]):
                if selected is None and not isinstance(module, nn.Linear):  # only the Linear stem takes no mask
                    selected = positions.mask
                # any module but the package's own plain stems (which mask for themselves) is handed the modality's own
                # columns at its own tokens, zero elsewhere: an adapter around a stem (LoRA's `x -> B A x` beside it)
                # sees what the stem sees, never another modality's or padding's values
                own = values
                if not plain_module_of(module, STEMS.values()):
                    width = self.feature_widths[index]
                    own = values[..., :width] if selected is None else own_frames(values, selected[..., None], width)
                if isinstance(module, ConvStem) and positions.token_counts is not None:
                    parts.append(module(own, selected, own_tokens=positions.token_counts[index]))
                else:
                    parts.append(module(own, selected))
        content = sum(parts[1:], parts[0]) if parts else weight.new_zeros(*modality_ids.shape, weight.shape[-1])
        if self.unit_scale:
            return self.normalise_per_modality(content, modality_ids, weight)
        return content + nn.functional.embedding(modality_ids, weight)

    def grouped_linear_stems(
        self,
        values: torch.Tensor | None,
        positions: TokenPositions,
        order: ModalityOrder | None,
        joins: list[bool],
        hidden_size: int,
    ) -> torch.Tensor | None:
        """Every Linear stem at once, as one grouped GEMM over the tokens in modality order (`grouped_posattn.py`):
        `(B, L, H)`, zero at every token that is not a real token of a Linear-stem modality. Each row keeps only its
        own modality's columns (`where`: whatever the others hold, even NaN, cannot reach it). None where the path does
        not run: no `order` (one modality, or `grouped_path_allowed` said no), no features, no Linear stem, or a hidden
        size grouped_mm cannot take (not a multiple of 8). `joins`: whether each content module is one of them
        (`in_grouped_stems`), decided once per forward by the caller."""
        stems = [module if join else None for module, join in zip(self.content, joins)]
        if order is None or values is None or not any(stems):
            return None
        columns = max(stem.in_features for stem in stems if stem is not None)
        if not aligned(hidden_size):
            return None
        weights = [stem.weight if stem else None for stem in stems]
        weight = stacked_affine(weights, [stem.bias if stem else None for stem in stems], columns, hidden_size, values)
        # Per modality, the columns a row keeps: its stem's features and the bias's column of ones (none for a modality
        # without a Linear stem); the extra last row, all False, is padding's
        width = affine_width(columns)
        column = torch.arange(width, device=values.device)
        nothing = column < 0
        own_columns = torch.stack(
            [(column < stem.in_features) | (column == columns) if stem else nothing for stem in stems] + [nothing]
        )
        row_kind = torch.where(order.sort(positions.mask), order.sorted_ids, len(stems))
        features = values[..., :columns]
        rows = order.sort(torch.cat((features, bias_inputs(features, columns)), dim=-1))
        # a row of zeros (another modality's token, padding) maps to exactly zero: the bias is inside the GEMM
        embedded = grouped_linear(torch.where(own_columns.index_select(0, row_kind), rows, 0.0), weight, order)
        return order.unsort(embedded, positions.mask.shape)

    def encode_positions(
        self, content: torch.Tensor, positions: TokenPositions
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """`(B, L, H)` absolute encoding, RMS-normalised when `unit_scale`, and its `(table, index[, owners])` rows when
        it was computed from them (else None): an encoding of the position alone (`sinusoidal`, `learned`, `multiscale`: a
        `rows` method) is computed and normalised once per row of its table and gathered, when the table has fewer rows
        than the batch has tokens; the fusion may then use the table too."""
        encoding = self.position_encoding
        # a hooked, wrapped or subclassed encoding is called as a module: its hooks see (and may change) every token's
        # encoding, and a subclass's own `forward` is not bypassed by the registered class's `rows`
        registered = plain_module_of(encoding, ABSOLUTE_POSITION_ENCODINGS.values())
        rows = getattr(encoding, "rows", None) if registered else None
        rows = rows(content, positions) if rows is not None else None
        if rows is not None and rows[0].shape[0] < positions.mask.numel():
            table, index, *owners = rows  # owners: each row's modality, where a row belongs to one
            table = self.normalise_encoding(table)
            return nn.functional.embedding(index, table), (table, index, *owners)
        return self.normalise_encoding(self.position_encoding(content, positions)), None

    def normalise_encoding(self, encoding: torch.Tensor) -> torch.Tensor:
        """RMS-normalised when `unit_scale`, in the norm's own dtype: under autocast the encoding comes in bfloat16 and
        the weight stays float32, which torch's fused RMSNorm refuses (it warns and takes a slower path)."""
        if self.encoding_norm is None:
            return encoding
        weight = getattr(self.encoding_norm, "weight", None)  # none on a wrapper, or a norm without an affine
        norm_dtype = weight.dtype if isinstance(weight, torch.Tensor) else encoding.dtype
        return self.encoding_norm(encoding.to(norm_dtype)).to(encoding.dtype)

    def normalise_per_modality(
        self, content: torch.Tensor, modality_ids: torch.Tensor, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """$\gamma_m \odot \mathrm{LN}(c) + \beta_m + e_m$ with the modality embedding $e_m$ folded into the shift:
        one fused `layer_norm` with one modality; otherwise the `(M, H)` tables gathered as embedding rows
        (index_select, several times faster on CPU than advanced indexing) and one `addcmul`."""
        shift = self.content_norm_bias + (self.modality_table(modality_ids.device) if table is None else table)
        if len(self.content) == 1:
            return nn.functional.layer_norm(content, content.shape[-1:], self.content_norm_weight[0], shift[0],
                                            eps=self.layer_norm_eps)
        normalised = nn.functional.layer_norm(content, content.shape[-1:], eps=self.layer_norm_eps)
        scale = nn.functional.embedding(modality_ids, self.content_norm_weight)
        return torch.addcmul(nn.functional.embedding(modality_ids, shift), normalised, scale)

    def modality_order(self, positions: TokenPositions, table: torch.Tensor) -> ModalityOrder | None:
        """The batch's tokens in modality order, for per-modality maps as one grouped GEMM (`grouped_posattn.py`), where
        that path runs: several modalities with such maps, eager execution on CPU, in a dtype grouped_mm takes (the
        modality `table`'s: the model's)."""
        if not self.maps_per_modality or not grouped_path_allowed(table):
            return None
        return ModalityOrder.of(positions.modality_ids, len(self.content))

    def forward(
        self,
        input_values: torch.Tensor | None,
        input_ids: torch.Tensor | None,
        positions: TokenPositions,
        mask_positions: torch.Tensor | None = None,
        mask_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        modality_ids = positions.modality_ids
        table = self.modality_table(modality_ids.device)
        order = self.modality_order(positions, table)
        hidden_states = self.embed_content(input_values, input_ids, positions, order, table)
        if mask_positions is not None:
            # Masked-reconstruction pretraining: a masked token keeps its modality and position but its content is the
            # modality's learned mask embedding (wav2vec 2.0's `masked_spec_embed`), not zeros.
            masked = nn.functional.embedding(modality_ids, mask_embedding + table)
            hidden_states = torch.where(mask_positions[..., None], masked.to(hidden_states.dtype), hidden_states)
        if self.position_encoding is not None:
            encoding, rows = self.encode_positions(hidden_states, positions)
            hidden_states = self.fusion(hidden_states, encoding, modality_ids, order, rows)
        return self.dropout(hidden_states)


def in_grouped_stems(module: nn.Module) -> bool:
    """Whether a modality's content module joins the grouped GEMM of the Linear stems, which reads its weights: a
    plain `LinearStem` (`plain_module`); a hooked or wrapped one is called as a module."""
    return plain_module(module, LinearStem)
