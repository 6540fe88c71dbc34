"""Independent torch modules of the supported architectures, for checking parameter counts and
matmul FLOPs. Written from the papers / Hugging Face layouts, not from roofline.transformer."""

import torch
from torch import nn


def _linear(i, o, bias):
    return nn.Linear(i, o, bias=bias)


class LlamaLike(nn.Module):
    """Llama / Mistral / Qwen2 (qkv bias) / Mixtral (experts) layout."""

    def __init__(self, c):
        super().__init__()
        h, nh, nkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        d = c.get("head_dim") or h // nh
        inter, vocab, qkv_bias = (
            c["intermediate_size"],
            c["vocab_size"],
            c.get("attention_bias", c["model_type"] == "qwen2"),
        )
        self.embed = nn.Embedding(vocab, h)
        self.layers = nn.ModuleList()
        for _ in range(c["num_hidden_layers"]):
            layer = nn.Module()
            layer.attn_norm = nn.RMSNorm(h)
            layer.q = _linear(h, nh * d, qkv_bias)
            layer.k = _linear(h, nkv * d, qkv_bias)
            layer.v = _linear(h, nkv * d, qkv_bias)
            layer.o = _linear(nh * d, h, False)
            layer.mlp_norm = nn.RMSNorm(h)
            n_exp = c.get("num_local_experts", 0)
            if n_exp:
                layer.router = _linear(h, n_exp, False)
                layer.experts = nn.ModuleList(
                    nn.ModuleDict(
                        {"w1": _linear(h, inter, False), "w3": _linear(h, inter, False), "w2": _linear(inter, h, False)}
                    )
                    for _ in range(n_exp)
                )
            else:
                layer.gate = _linear(h, inter, False)
                layer.up = _linear(h, inter, False)
                layer.down = _linear(inter, h, False)
            self.layers.append(layer)
        self.norm = nn.RMSNorm(h)
        self.lm_head = None if c.get("tie_word_embeddings", False) else _linear(h, vocab, False)


class GPT2Like(nn.Module):
    """GPT-2: wte, wpe, LayerNorms, fused c_attn, c_proj, c_fc, mlp c_proj, all with biases; tied head."""

    def __init__(self, c):
        super().__init__()
        h = c["n_embd"]
        inter = c.get("n_inner") or 4 * h
        self.wte = nn.Embedding(c["vocab_size"], h)
        self.wpe = nn.Embedding(c["n_positions"], h)
        self.blocks = nn.ModuleList()
        for _ in range(c["n_layer"]):
            block = nn.Module()
            block.ln_1 = nn.LayerNorm(h)
            block.c_attn = nn.Linear(h, 3 * h)
            block.c_proj = nn.Linear(h, h)
            block.ln_2 = nn.LayerNorm(h)
            block.c_fc = nn.Linear(h, inter)
            block.mlp_proj = nn.Linear(inter, h)
            self.blocks.append(block)
        self.ln_f = nn.LayerNorm(h)


def build(config: dict, dtype=torch.bfloat16) -> nn.Module:
    cls = GPT2Like if config["model_type"] == "gpt2" else LlamaLike
    with torch.device("meta"):
        return cls(config).to(dtype)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def n_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())
