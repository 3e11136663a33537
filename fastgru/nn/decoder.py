"""The attention GRU decoder of sequence-to-sequence models: AttentionGRUDecoder, with teacher
forcing (``forward``) and one token at a time (``init_state`` / ``step``), and ``greedy_decode``,
the example decoding loop."""

from __future__ import annotations

import torch
from torch import nn

from .. import functional as AF
from ..functional.decoder import DecoderState, _feeds, _score
from .attention import _vector
from .recurrent import GRU

__all__ = ["AttentionGRUDecoder", "DecoderState", "greedy_decode"]


class AttentionGRUDecoder(nn.Module):
    """A GRU decoder attending over encoder outputs ``keys`` (N, T_in, key_size) at every step.

    attention="additive" (Bahdanau et al. 2015, the PyTorch seq2seq tutorial's AttnDecoderRNN):
        c_t = attend(h_{t-1}), score_j = v . tanh(W_q h_{t-1} + W_k k_j + b_k), h_t = GRU([x_t, c_t], h_{t-1})
    attention="dot" / "general" (Luong et al. 2015): h_t = GRU(x_t, h_{t-1}), c_t = attend(h_t),
        score_j = h_t . k_j (dot: key_size must equal hidden_size) or h_t . (W_a k_j) (general);
        ``input_feeding=True`` feeds the previous context: h_t = GRU([x_t, c_{t-1}], h_{t-1}).
    attend: the masked softmax of the scores over the keys, c = sum_j weights_j k_j.
    With num_layers > 1 the query is the top layer's state and the context joins layer 0.

    Parameters: ``gru`` (fastgru.GRU(input_size [+ key_size when the context joins the input],
    hidden_size, num_layers, batch_first=True): its layer-0 input is [x_t, c]); additive:
    ``query_proj`` (nn.Linear(hidden_size, attention_size, bias=False)), ``key_proj``
    (nn.Linear(key_size, attention_size, bias=bias), holding the score's one bias) and ``v``
    (attention_size,); general: ``key_proj`` (nn.Linear(key_size, hidden_size, bias=False), W_a).

    forward(inputs (N, T_out, input_size), keys, key_lengths=None, key_padding_mask=None, h0=None,
    need_weights=False) -> (outputs (N, T_out, hidden_size), contexts (N, T_out, key_size),
    weights (N, T_out, T_in) or None, h_n (num_layers, N, hidden_size)).
    init_state(keys, key_lengths=None, key_padding_mask=None, h0=None) -> DecoderState (the keys
    projected once); step(x_t (N, input_size), state) -> (output (N, hidden_size), next state,
    whose ``context`` is c_t). A step reads no tensor value on the host: it can be captured in a
    CUDA graph.
    """

    def __init__(self, input_size, hidden_size, key_size, attention="additive", attention_size=None,
                 input_feeding=False, num_layers=1, bias=True, device=None, dtype=None):
        super().__init__()
        _score(attention)
        for name, size in (("input_size", input_size), ("hidden_size", hidden_size), ("key_size", key_size),
                           ("num_layers", num_layers)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"{name} must be a positive int, got {size!r}")
        feeds = _feeds(attention, input_feeding)  # the context joins the GRU's input
        if attention == "dot" and key_size != hidden_size:
            raise ValueError(f"attention='dot' scores h . k: key_size ({key_size}) must equal hidden_size "
                             f"({hidden_size}); use attention='general' for a learned W_a")
        if attention != "additive" and attention_size is not None:
            raise ValueError(f"attention_size applies to additive attention; {attention!r} scores in hidden_size")
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.key_size = input_size, hidden_size, key_size
        self.attention, self.input_feeding, self.num_layers = attention, input_feeding, num_layers
        self.attention_size = (attention_size or hidden_size) if attention == "additive" else hidden_size
        self.gru = GRU(input_size + (key_size if feeds else 0), hidden_size, num_layers, bias=bias, batch_first=True,
                       **factory)
        if attention == "additive":
            self.query_proj = nn.Linear(hidden_size, self.attention_size, bias=False, **factory)
            self.key_proj = nn.Linear(key_size, self.attention_size, bias=bias, **factory)
            self.v = _vector(self.attention_size, device, dtype)
        elif attention == "general":
            self.key_proj = nn.Linear(key_size, hidden_size, bias=False, **factory)

    def _layers(self):
        return self.gru._layer_weights()

    def _attention(self):
        additive = self.attention == "additive"
        key_proj = getattr(self, "key_proj", None)
        return dict(attention=self.attention, query_weight=self.query_proj.weight if additive else None,
                    key_weight=None if key_proj is None else key_proj.weight,
                    key_bias=None if key_proj is None else key_proj.bias, v=self.v if additive else None)

    def forward(self, inputs, keys, key_lengths=None, key_padding_mask=None, h0=None, need_weights=False):
        return AF.attention_decoder(inputs, keys, h0, self._layers(), key_lengths=key_lengths,
                                    key_padding_mask=key_padding_mask, input_feeding=self.input_feeding,
                                    need_weights=need_weights, **self._attention())

    def init_state(self, keys, key_lengths=None, key_padding_mask=None, h0=None) -> DecoderState:
        a = self._attention()
        return AF.decoder_state(keys, h0, num_layers=self.num_layers, hidden_size=self.hidden_size,
                                attention=self.attention, key_weight=a["key_weight"], key_bias=a["key_bias"],
                                key_lengths=key_lengths, key_padding_mask=key_padding_mask)

    def step(self, x, state: DecoderState):
        a = self._attention()
        return AF.attention_decoder_step(x, state, self._layers(), attention=self.attention,
                                         query_weight=a["query_weight"], v=a["v"], input_feeding=self.input_feeding)

    def extra_repr(self):
        extra = f", attention_size={self.attention_size}" if self.attention == "additive" else ""
        extra += ", input_feeding=True" if self.input_feeding else ""
        extra += f", num_layers={self.num_layers}" if self.num_layers != 1 else ""
        return f"{self.input_size}, {self.hidden_size}, key_size={self.key_size}, attention={self.attention!r}" + extra


@torch.no_grad()
def greedy_decode(decoder, embed, project, keys, bos, max_len, key_lengths=None, key_padding_mask=None, h0=None):
    """Greedy decoding, one token at a time: from the token ``bos`` (an int, or (N,) tokens), feed
    ``embed(tokens)`` (N, input_size) to ``decoder.step`` and pick ``project(output, context)``'s
    argmax (logits (N, vocab)) as the next token, ``max_len`` times. Returns the tokens
    (N, max_len). Every step has the same shapes and reads nothing back to the host, so a caller
    may capture ``decoder.step`` in a CUDA graph."""
    state = decoder.init_state(keys, key_lengths=key_lengths, key_padding_mask=key_padding_mask, h0=h0)
    N = keys.shape[0]
    tokens = torch.as_tensor(bos, device=keys.device).expand(N) if not torch.is_tensor(bos) or bos.dim() == 0 else bos
    out = []
    for _ in range(max_len):
        output, state = decoder.step(embed(tokens), state)
        tokens = project(output, state.context).argmax(dim=-1)
        out.append(tokens)
    return torch.stack(out, dim=1)
