#!/usr/bin/env python3
"""PyTorch baseline for bench/train_vs_torch.sh: trains the same llama-style
model as mope's trainer (src/train) and reports training tokens/s.

Architecture, matching src/train exactly:
  token embedding (V x C), tied with the output (logits = x E^T), no biases;
  per block: RMSNorm (eps 1e-5, weight, no bias) -> q, k, v (grouped-query:
  n_kv_heads <= n_heads, query head h reads KV head h // (H / KH)) -> RoPE
  NORMAL mode (adjacent pairs (x[2i], x[2i+1]) rotate by pos * base^(-2i/hd),
  base 10000) -> causal softmax(q k^T / sqrt(hd)) v -> attn_output, residual;
  RMSNorm -> down(silu(gate(x)) * up(x)), residual; final RMSNorm; logits.
Loss: mean next-token cross-entropy; the last position of every sequence
has no target (ignored).  Optimizer: AdamW lr 3e-4 (constant), betas
(0.9, 0.95), eps 1e-8, weight decay 0.1 on the embedding and the matrices
only (not on norm weights), gradient clipping to global L2 norm 1.0.
Init as mope: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 L)),
norms 1 (speed does not depend on it; --load takes mope's exact values).

Each timed step is a full update: zero_grad, forward, loss, backward,
clip, AdamW, its phases timed as bench_train_cmp.c times mope's.  Besides
the mean, the best step is reported (on a shared machine other processes
only ever add time).  The last line is machine-readable:
  RESULT params=<n> tokens_per_s=<mean> best_tokens_per_s=<x> tokens_per_cpu_s=<x>
         s_per_step=<mean> fwd=<s> bwd=<s> upd=<s>   (the split of the best step)

--load FILE reads what `bench_train_cmp --dump FILE` wrote (batch shape,
tokens, and mope's initial parameters in its tensor order), so that the
per-step losses of the two implementations can be compared: equal losses
show that the architectures are the same, not just the parameter counts.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    """x: (B, T, nh, hd); cos, sin: (T, hd/2). Rotates adjacent pairs."""
    B, T, nh, hd = x.shape
    xp = x.view(B, T, nh, hd // 2, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    c = cos.view(1, T, 1, hd // 2)
    s = sin.view(1, T, 1, hd // 2)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).view(B, T, nh, hd)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        C, H, KH = a.embd, a.heads, a.kv_heads
        self.H, self.KH, self.hd = H, KH, C // H
        self.attn_norm = RMSNorm(C, a.eps)
        self.wq = nn.Linear(C, H * self.hd, bias=False)
        self.wk = nn.Linear(C, KH * self.hd, bias=False)
        self.wv = nn.Linear(C, KH * self.hd, bias=False)
        self.wo = nn.Linear(H * self.hd, C, bias=False)
        self.ffn_norm = RMSNorm(C, a.eps)
        self.wg = nn.Linear(C, a.ffn, bias=False)
        self.wu = nn.Linear(C, a.ffn, bias=False)
        self.wd = nn.Linear(a.ffn, C, bias=False)
        self.sdpa = a.attn == "sdpa"

    def attention(self, x, cos, sin, mask):
        B, T, _ = x.shape
        H, KH, hd = self.H, self.KH, self.hd
        q = rope(self.wq(x).view(B, T, H, hd), cos, sin).transpose(1, 2)  # (B, H, T, hd)
        k = rope(self.wk(x).view(B, T, KH, hd), cos, sin).transpose(1, 2)  # (B, KH, T, hd)
        v = self.wv(x).view(B, T, KH, hd).transpose(1, 2)
        if KH != H:
            k = k.repeat_interleave(H // KH, dim=1)
            v = v.repeat_interleave(H // KH, dim=1)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            y = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        return self.wo(y.transpose(1, 2).reshape(B, T, H * hd))

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(self.attn_norm(x), cos, sin, mask)
        h = self.ffn_norm(x)
        return x + self.wd(F.silu(self.wg(h)) * self.wu(h))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embd = nn.Embedding(a.vocab, a.embd)
        self.blocks = nn.ModuleList([Block(a) for _ in range(a.layers)])
        self.out_norm = RMSNorm(a.embd, a.eps)
        hd = a.embd // a.heads
        # angles in double, as mope does
        inv = torch.tensor([10000.0 ** (-2.0 * i / hd) for i in range(hd // 2)], dtype=torch.float64)
        ang = torch.arange(a.seq, dtype=torch.float64)[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        self.register_buffer("mask", torch.triu(torch.ones(a.seq, a.seq, dtype=torch.bool), 1), persistent=False)

    def forward(self, tok):
        T = tok.shape[1]
        x = self.embd(tok)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T], self.mask[:T, :T])
        return F.linear(self.out_norm(x), self.embd.weight)  # tied output

    def tensors_in_mope_order(self):
        """Parameters in the order of mope's flat buffer (token_embd, blk.l.*, output_norm)."""
        out = [self.embd.weight]
        for b in self.blocks:
            out += [b.attn_norm.weight, b.wq.weight, b.wk.weight, b.wv.weight, b.wo.weight,
                    b.ffn_norm.weight, b.wg.weight, b.wu.weight, b.wd.weight]
        return out + [self.out_norm.weight]


def init_like_mope(model, n_layer):
    resid = 0.02 / math.sqrt(2.0 * n_layer)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                std = resid if name.endswith(("wo.weight", "wd.weight")) else 0.02
                p.normal_(0.0, std, generator=g)


def loaded_blas():
    """Shared objects mapped into this process whose name says BLAS/LAPACK,
    with the file each symlink resolves to (update-alternatives chains)."""
    seen = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6:
                path = parts[5]
                base = os.path.basename(path).lower()
                if ("blas" in base or "lapack" in base) and path not in seen:
                    seen.append(path)
    return [(p, os.path.realpath(p)) for p in seen]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=688)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--attn", choices=["plain", "sdpa"], default="plain")
    ap.add_argument("--load", metavar="FILE", help="batch and initial parameters from bench_train_cmp --dump")
    ap.add_argument("--show-config", action="store_true", help="print torch.__config__ and the BLAS loaded")
    a = ap.parse_args()
    if a.embd % a.heads or (a.embd // a.heads) % 2 or a.heads % a.kv_heads or a.steps < 1 or a.warmup < 0:
        sys.exit("torch_llama.py: inconsistent shape (embd % heads, even head_dim, heads % kv_heads, steps >= 1)")
    if a.attn == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        print(f"torch: scaled_dot_product_attention is not available in torch {torch.__version__}")
        sys.exit(3)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dump = None
    if a.load:
        raw = np.fromfile(a.load, dtype=np.int32)
        a.batch, a.seq = int(raw[0]), int(raw[1])
        dump = raw
    model = Llama(a)
    init_like_mope(model, a.layers)
    B, T, V = a.batch, a.seq, a.vocab
    if dump is not None:
        n_tok = B * T
        tok = torch.from_numpy(dump[2:2 + n_tok].astype(np.int64)).view(B, T)
        flat = dump[2 + n_tok:].view(np.float32)
        off = 0
        with torch.no_grad():
            for p in model.tensors_in_mope_order():
                n = p.numel()
                if off + n > flat.size:
                    sys.exit(f"torch_llama.py: {a.load} holds fewer parameters than the model needs")
                p.copy_(torch.from_numpy(flat[off:off + n].copy()).view_as(p))
                off += n
        if off != flat.size:
            sys.exit(f"torch_llama.py: {a.load} holds {flat.size} parameters, the model {off}")
    else:
        g = torch.Generator().manual_seed(2)
        tok = torch.randint(0, V, (B, T), generator=g)
    tgt = torch.full((B, T), -1, dtype=torch.long)
    tgt[:, :-1] = tok[:, 1:]

    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if not n.endswith("norm.weight")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("norm.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)

    if a.show_config:
        print(torch.__config__.show().rstrip())
        print(torch.__config__.parallel_info().rstrip())
    # a matmul first, so that a lazily loaded BLAS is mapped before we look
    torch.ones(64, 64) @ torch.ones(64, 64)
    for path, real in loaded_blas():
        print(f"torch BLAS loaded: {path} -> {real}")
    print(f"torch {torch.__version__}: {n_params} parameters (vocab {V}, embd {a.embd}, layers {a.layers}, "
          f"heads {a.heads}/{a.kv_heads}, ffn {a.ffn}, tied); batch {B} x {T}; {torch.get_num_threads()} threads; "
          f"attention {a.attn}")
    sys.stdout.flush()

    def step():
        """One update, the phases timed: (loss, forward, backward, clip + AdamW)."""
        p0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(tok).view(-1, V), tgt.view(-1), ignore_index=-1)
        p1 = time.perf_counter()
        loss.backward()
        p2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        p3 = time.perf_counter()
        return loss.item(), (p1 - p0, p2 - p1, p3 - p2)

    for _ in range(a.warmup):
        step()
    splits = []
    c0 = time.process_time()  # CPU seconds of all threads, as bench_train_cmp.c's tokens per CPU-second
    for s in range(a.steps):
        loss, ph = step()
        splits.append(ph)
        print(f"torch step {s + 1}: loss {loss:.6f}  {sum(ph):.3f} s (forward {ph[0]:.3f}, backward {ph[1]:.3f}, "
              f"clip+AdamW {ph[2]:.3f})")
        sys.stdout.flush()
    cpu = (time.process_time() - c0) / a.steps
    mean = sum(sum(ph) for ph in splits) / a.steps
    best = min(splits, key=sum)
    avg = [sum(ph[i] for ph in splits) / a.steps for i in range(3)]
    print(f"torch: {B * T / mean:.1f} tokens/s mean ({mean:.3f} s/step: forward {avg[0]:.3f}, backward {avg[1]:.3f}, "
          f"clip+AdamW {avg[2]:.3f}); {B * T / sum(best):.1f} tokens/s best step; {B * T / cpu:.1f} tokens per CPU-second")
    print(f"RESULT params={n_params} tokens_per_s={B * T / mean:.2f} best_tokens_per_s={B * T / sum(best):.2f} "
          f"tokens_per_cpu_s={B * T / cpu:.2f} s_per_step={mean:.4f} fwd={best[0]:.4f} bwd={best[1]:.4f} upd={best[2]:.4f}")

if __name__ == "__main__":
    main()
