"""Proof corpus for the chapter 7 checks: learner answers as notebook-cell source.

Same conventions as corpus_ch02 (``Entry``; sources run after the setup cell's imports).
For chunked_attention and linear_attention, some entries give the right VALUES but build
a (T_q x T_k) tensor on the way: the structural check must name that.
"""

from __future__ import annotations

from .corpus_ch02 import Entry

# ---------------------------------------------------------------------------
# sliding_window_mask
# ---------------------------------------------------------------------------

WINDOW = '''
def sliding_window_mask(seq_len, window, causal=False):
    i = torch.arange(seq_len)
    offset = i[:, None] - i[None, :]
    allowed = offset.abs() <= window
    if causal:
        allowed = allowed & (offset >= 0)
    return allowed
'''


def window_with(**replace: str) -> str:
    src = WINDOW
    for old, new in replace.items():
        old = {"near": "allowed = offset.abs() <= window",
               "causal": "allowed = allowed & (offset >= 0)",
               "ret": "return allowed"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


# ---------------------------------------------------------------------------
# lsh_buckets
# ---------------------------------------------------------------------------

LSH = '''
def lsh_buckets(x, rotations):
    rotated = x @ rotations
    return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)
'''


def lsh(ret: str) -> str:
    return LSH.replace("return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)", ret)


# ---------------------------------------------------------------------------
# linear_attention
# ---------------------------------------------------------------------------

LINEAR = '''
def linear_attention(q, k, v, causal=False, eps=1e-6):
    q, k = F.elu(q) + 1, F.elu(k) + 1
    if causal:
        S = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=-3)
        z = torch.cumsum(k, dim=-2)
        num = (q.unsqueeze(-2) @ S).squeeze(-2)
        den = (q * z).sum(dim=-1, keepdim=True)
    else:
        S = k.transpose(-2, -1) @ v
        z = k.sum(dim=-2)
        num = q @ S
        den = (q * z.unsqueeze(-2)).sum(dim=-1, keepdim=True)
    return num / (den + eps)
'''


def linear_with(**replace: str) -> str:
    src = LINEAR
    for old, new in replace.items():
        old = {"phi": "q, k = F.elu(q) + 1, F.elu(k) + 1",
               "S_causal": "S = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=-3)",
               "z_causal": "z = torch.cumsum(k, dim=-2)",
               "ret": "return num / (den + eps)"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


# ---------------------------------------------------------------------------
# chunked_attention
# ---------------------------------------------------------------------------

CHUNKED = '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    T_q, T_k = q.shape[-2], k.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1])
    m = torch.full(q.shape[:-1], float("-inf"))
    l = torch.zeros(q.shape[:-1])
    acc = torch.zeros(*q.shape[:-1], v.shape[-1])
    rows = torch.arange(T_q)[:, None]
    for start in range(0, T_k, chunk_size):
        end = min(start + chunk_size, T_k)
        s = (q @ k[..., start:end, :].transpose(-2, -1)) * scale
        if causal:
            s = s.masked_fill(torch.arange(start, end)[None, :] > rows, float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        p = torch.exp(s - m_new.unsqueeze(-1))
        alpha = torch.exp(m - m_new)
        l = l * alpha + p.sum(dim=-1)
        acc = acc * alpha.unsqueeze(-1) + p @ v[..., start:end, :]
        m = m_new
    return acc / l.unsqueeze(-1)
'''


def chunked_with(**replace: str) -> str:
    src = CHUNKED
    for old, new in replace.items():
        old = {"loop": "for start in range(0, T_k, chunk_size):",
               "mask": 's = s.masked_fill(torch.arange(start, end)[None, :] > rows, float("-inf"))',
               "m_new": "m_new = torch.maximum(m, s.amax(dim=-1))",
               "p": "p = torch.exp(s - m_new.unsqueeze(-1))",
               "alpha": "alpha = torch.exp(m - m_new)",
               "l": "l = l * alpha + p.sum(dim=-1)",
               "acc": "acc = acc * alpha.unsqueeze(-1) + p @ v[..., start:end, :]",
               "ret": "return acc / l.unsqueeze(-1)"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


CORRECT = [
    # sliding_window_mask
    Entry("window_abs_offset", "sliding_window_mask", WINDOW),
    Entry("window_tril_triu", "sliding_window_mask", '''
def sliding_window_mask(seq_len, window, causal=False):
    ones = torch.ones(seq_len, seq_len, dtype=torch.bool)
    band = ones.tril(window) & ones.triu(-window)
    return band & ones.tril() if causal else band
'''),
    Entry("window_python_loops", "sliding_window_mask", '''
def sliding_window_mask(seq_len, window, causal=False):
    mask = torch.zeros(seq_len, seq_len, dtype=torch.bool)
    for i in range(seq_len):
        for j in range(seq_len):
            mask[i, j] = abs(i - j) <= window and (j <= i or not causal)
    return mask
'''),
    Entry("window_two_sided_causal_by_range", "sliding_window_mask", '''
def sliding_window_mask(seq_len, window, causal=False):
    pos = torch.arange(seq_len)
    lo = (pos - window)[:, None]
    hi = (pos if causal else pos + window)[:, None]
    return (pos[None, :] >= lo) & (pos[None, :] <= hi)
'''),
    # lsh_buckets
    Entry("lsh_cat_argmax", "lsh_buckets", LSH),
    Entry("lsh_argmin_of_reversed_halves", "lsh_buckets", lsh(
        "return torch.cat([-rotated, rotated], dim=-1).argmin(dim=-1)")),
    Entry("lsh_abs_and_sign", "lsh_buckets", '''
def lsh_buckets(x, rotations):
    rotated = torch.einsum("...td,dh->...th", x, rotations)
    idx = rotated.abs().argmax(dim=-1)
    negative = rotated.gather(-1, idx.unsqueeze(-1)).squeeze(-1) < 0
    return idx + negative.long() * rotations.shape[-1]
'''),
    Entry("lsh_matmul_function", "lsh_buckets", lsh(
        "both = torch.cat((torch.matmul(x, rotations), torch.matmul(-x, rotations)), dim=-1)\n"
        "    return torch.max(both, dim=-1).indices")),
    # linear_attention
    Entry("linear_cumsum", "linear_attention", LINEAR),
    Entry("linear_einsum", "linear_attention", '''
def linear_attention(q, k, v, causal=False, eps=1e-6):
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    if causal:
        S = torch.einsum("...td,...te->...tde", phi_k, v).cumsum(dim=-3)
        z = phi_k.cumsum(dim=-2)
        num = torch.einsum("...td,...tde->...te", phi_q, S)
        den = torch.einsum("...td,...td->...t", phi_q, z)
    else:
        S = torch.einsum("...td,...te->...de", phi_k, v)
        z = phi_k.sum(dim=-2)
        num = torch.einsum("...td,...de->...te", phi_q, S)
        den = torch.einsum("...td,...d->...t", phi_q, z)
    return num / (den.unsqueeze(-1) + eps)
'''),
    Entry("linear_loop_over_positions", "linear_attention", '''
def linear_attention(q, k, v, causal=False, eps=1e-6):
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    if not causal:
        S = phi_k.transpose(-2, -1) @ v
        z = phi_k.sum(dim=-2, keepdim=True).transpose(-2, -1)
        return (phi_q @ S) / (phi_q @ z + eps)
    S = torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1])
    z = torch.zeros(*q.shape[:-2], q.shape[-1])
    outs = []
    for i in range(q.shape[-2]):
        S = S + phi_k[..., i, :, None] * v[..., i, None, :]
        z = z + phi_k[..., i, :]
        num = (phi_q[..., i, None, :] @ S).squeeze(-2)
        den = (phi_q[..., i, :] * z).sum(dim=-1, keepdim=True)
        outs.append(num / (den + eps))
    return torch.stack(outs, dim=-2)
'''),
    Entry("linear_blocks_with_small_tiles", "linear_attention", '''
def linear_attention(q, k, v, causal=False, eps=1e-6):
    q, k = F.elu(q) + 1, F.elu(k) + 1
    if not causal:
        return (q @ (k.transpose(-2, -1) @ v)) / (q @ k.sum(dim=-2).unsqueeze(-1) + eps)
    T, c = q.shape[-2], 16
    S = torch.zeros(q.shape[-1], v.shape[-1])
    z = torch.zeros(q.shape[-1], 1)
    outs = []
    for t0 in range(0, T, c):
        qc, kc, vc = q[..., t0:t0 + c, :], k[..., t0:t0 + c, :], v[..., t0:t0 + c, :]
        within = torch.tril(qc @ kc.transpose(-2, -1))
        outs.append((qc @ S + within @ vc) / (qc @ z + within.sum(dim=-1, keepdim=True) + eps))
        S = S + kc.transpose(-2, -1) @ vc
        z = z + kc.sum(dim=-2).unsqueeze(-1)
    return torch.cat(outs, dim=-2)
'''),
    # chunked_attention
    Entry("chunked_online_softmax", "chunked_attention", CHUNKED),
    Entry("chunked_two_passes", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    T_q, T_k = q.shape[-2], k.shape[-2]
    q = q / math.sqrt(q.shape[-1])
    rows = torch.arange(T_q)[:, None]

    def scores(start, end):
        end = min(end, T_k)
        s = q @ k[..., start:end, :].transpose(-2, -1)
        if causal:
            s = s.masked_fill(torch.arange(start, end) > rows, float("-inf"))
        return s

    m = torch.full(q.shape[:-1], float("-inf"))
    for start in range(0, T_k, chunk_size):  # pass 1: the row maxima
        m = torch.maximum(m, scores(start, start + chunk_size).amax(dim=-1))
    l, acc = 0, 0
    for start in range(0, T_k, chunk_size):  # pass 2: sums under the final maxima
        p = torch.exp(scores(start, start + chunk_size) - m.unsqueeze(-1))
        l = l + p.sum(dim=-1)
        acc = acc + p @ v[..., start:start + chunk_size, :]
    return acc / l.unsqueeze(-1)
'''),
    Entry("chunked_running_logsumexp", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    T_q, T_k = q.shape[-2], k.shape[-2]
    lse = torch.full(q.shape[:-1], float("-inf"))
    out = torch.zeros(*q.shape[:-1], v.shape[-1])
    i = torch.arange(T_q).unsqueeze(-1)
    for start in range(0, T_k, chunk_size):
        kc, vc = k[..., start:start + chunk_size, :], v[..., start:start + chunk_size, :]
        s = torch.einsum("...qd,...kd->...qk", q, kc) / math.sqrt(q.size(-1))
        if causal:
            j = torch.arange(start, start + kc.shape[-2])
            s = torch.where(j <= i, s, torch.tensor(float("-inf")))
        chunk_lse = torch.logsumexp(s, dim=-1)
        new_lse = torch.logaddexp(lse, chunk_lse)
        out = out * torch.exp(lse - new_lse).unsqueeze(-1) + torch.exp(s - new_lse.unsqueeze(-1)) @ vc
        lse = new_lse
    return out
'''),
    Entry("chunked_padded_to_full_chunks", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    T_q, T_k = q.shape[-2], k.shape[-2]
    n = -(-T_k // chunk_size)
    pad = n * chunk_size - T_k
    k = F.pad(k, (0, 0, 0, pad))
    v = F.pad(v, (0, 0, 0, pad))
    q = q * q.shape[-1] ** -0.5
    m = l = acc = None
    for c in range(n):
        start = c * chunk_size
        pos = torch.arange(start, start + chunk_size)
        blocked = (pos >= T_k).expand(T_q, chunk_size)
        if causal:
            blocked = blocked | (pos[None, :] > torch.arange(T_q)[:, None])
        s = (q @ k[..., start:start + chunk_size, :].transpose(-2, -1)).masked_fill(blocked, float("-inf"))
        chunk_max = s.amax(dim=-1)
        m_new = chunk_max if m is None else torch.maximum(m, chunk_max)
        p = torch.exp(s - m_new[..., None])
        pv = p @ v[..., start:start + chunk_size, :]
        if m is None:
            l, acc = p.sum(-1), pv
        else:
            a = torch.exp(m - m_new)
            l, acc = l * a + p.sum(-1), acc * a[..., None] + pv
        m = m_new
    return acc / l[..., None]
'''),
    Entry("chunked_query_blocks_and_causal_skip", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    T_q, T_k = q.shape[-2], k.shape[-2]
    outs = []
    for q0 in range(0, T_q, 64):
        qb = q[..., q0:q0 + 64, :] / math.sqrt(q.shape[-1])
        rows = torch.arange(q0, q0 + qb.shape[-2])[:, None]
        last = min(T_k, q0 + qb.shape[-2]) if causal else T_k
        m = torch.full(qb.shape[:-1], -float("inf"))
        l = torch.zeros_like(m)
        acc = torch.zeros(*qb.shape[:-1], v.shape[-1])
        for start in range(0, last, chunk_size):
            end = min(start + chunk_size, last)
            s = qb @ k[..., start:end, :].transpose(-1, -2)
            if causal:
                s = s.masked_fill(torch.arange(start, end) > rows, -float("inf"))
            m_new = torch.maximum(m, s.max(dim=-1).values)
            p = (s - m_new[..., None]).exp()
            alpha = (m - m_new).exp()
            l = alpha * l + p.sum(-1)
            acc = alpha[..., None] * acc + p @ v[..., start:end, :]
            m = m_new
        outs.append(acc / l[..., None])
    return torch.cat(outs, dim=-2)
'''),
]

MISTAKES = [
    # sliding_window_mask
    Entry("window_exclusive", "sliding_window_mask", window_with(near="allowed = offset.abs() < window"),
          "exclusive"),
    Entry("window_one_sided", "sliding_window_mask",
          window_with(near="allowed = (offset >= 0) & (offset <= window)"), "one-sided"),
    Entry("window_causal_keeps_future", "sliding_window_mask", window_with(causal="pass"),
          "still keeps keys j > i"),
    Entry("window_causal_strict", "sliding_window_mask", window_with(causal="allowed = allowed & (offset > 0)"),
          "drops the diagonal"),
    Entry("window_causal_inverted", "sliding_window_mask", window_with(causal="allowed = allowed & (offset <= 0)"),
          "keeps the future side"),
    Entry("window_total_width", "sliding_window_mask", window_with(near="allowed = offset.abs() <= window // 2"),
          "total width"),
    Entry("window_float_mask", "sliding_window_mask", window_with(ret="return allowed.float()"),
          "dtype=torch.bool"),
    # lsh_buckets
    Entry("lsh_missing_negative_half", "lsh_buckets", lsh("return rotated.argmax(dim=-1)"),
          "-x @ R half is missing"),
    Entry("lsh_argmin", "lsh_buckets", lsh("return torch.cat([rotated, -rotated], dim=-1).argmin(dim=-1)"),
          "takes the argmin"),
    Entry("lsh_halves_in_wrong_order", "lsh_buckets",
          lsh("return torch.cat([-rotated, rotated], dim=-1).argmax(dim=-1)"), "wrong order"),
    Entry("lsh_abs", "lsh_buckets", lsh("return rotated.abs().argmax(dim=-1)"), "forgets the sign"),
    Entry("lsh_keepdim", "lsh_buckets",
          lsh("return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1, keepdim=True)"), "without keepdim"),
    # linear_attention
    Entry("linear_phi_relu", "linear_attention", linear_with(phi="q, k = F.relu(q), F.relu(k)"), "relu"),
    Entry("linear_phi_exp", "linear_attention", linear_with(phi="q, k = torch.exp(q), torch.exp(k)"),
          "feature map is exp(x)"),
    Entry("linear_phi_elu_without_one", "linear_attention", linear_with(phi="q, k = F.elu(q), F.elu(k)"),
          "without the + 1"),
    Entry("linear_eps_outside", "linear_attention", linear_with(ret="return num / den + eps"),
          "added to the result"),
    Entry("linear_eps_numerator_too", "linear_attention", linear_with(ret="return (num + eps) / (den + eps)"),
          "numerator too"),
    Entry("linear_eps_ignored", "linear_attention", linear_with(ret="return num / (den + 1e-6)"),
          "eps is missing"),
    Entry("linear_causal_all_keys", "linear_attention", linear_with(
        S_causal="S = (k.unsqueeze(-1) * v.unsqueeze(-2)).sum(dim=-3, keepdim=True)",
        z_causal="z = k.sum(dim=-2, keepdim=True)"), "still uses every key"),
    Entry("linear_causal_exclusive_cumsum", "linear_attention", linear_with(
        S_causal="S = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=-3) - k.unsqueeze(-1) * v.unsqueeze(-2)",
        z_causal="z = torch.cumsum(k, dim=-2) - k"), "exclusive prefix sum"),
    Entry("linear_no_normaliser", "linear_attention", linear_with(ret="return num"), "normaliser is missing"),
    Entry("linear_scaled_queries", "linear_attention", linear_with(
        phi="q, k = F.elu(q / math.sqrt(q.shape[-1])) + 1, F.elu(k) + 1"), "scaled by 1/sqrt(d)"),
    Entry("linear_quadratic_weights", "linear_attention", '''
def linear_attention(q, k, v, causal=False, eps=1e-6):
    A = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-2, -1)
    if causal:
        A = A.tril()
    return (A @ v) / (A.sum(dim=-1, keepdim=True) + eps)
''', "(T_q x T_k) tensor"),
    # chunked_attention
    Entry("chunked_no_running_max", "chunked_attention", chunked_with(
        m_new="m_new = torch.zeros_like(m)", alpha="alpha = torch.ones_like(m)"), "overflows float32"),
    Entry("chunked_no_rescaling", "chunked_attention", chunked_with(
        l="l = l + p.sum(dim=-1)", acc="acc = acc + p @ v[..., start:end, :]"),
        "what was summed before is not rescaled"),
    Entry("chunked_output_not_rescaled", "chunked_attention", chunked_with(
        acc="acc = acc + p @ v[..., start:end, :]"), "the accumulated output is not"),
    Entry("chunked_sum_not_rescaled", "chunked_attention", chunked_with(l="l = l + p.sum(dim=-1)"),
          "the running sum l is not"),
    Entry("chunked_alpha_inverted", "chunked_attention", chunked_with(
        alpha="alpha = torch.nan_to_num(torch.exp(m_new - m), posinf=0.0)"), "upside down"),
    Entry("chunked_drops_last_partial_chunk", "chunked_attention", chunked_with(
        loop="for start in range(0, (T_k // chunk_size) * chunk_size, chunk_size):"),
        "the last, shorter chunk is dropped"),
    Entry("chunked_causal_off_by_one", "chunked_attention", chunked_with(
        mask='s = s.masked_fill(torch.arange(start, end)[None, :] >= rows, float("-inf"))'), "off by one"),
    Entry("chunked_causal_local_index", "chunked_attention", chunked_with(
        mask='s = s.masked_fill(torch.arange(end - start)[None, :] > rows, float("-inf"))'),
        "INSIDE its chunk"),
    Entry("chunked_causal_ignored", "chunked_attention", chunked_with(mask="pass"), "causal=True is ignored"),
    Entry("chunked_softmax_per_chunk_averaged", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    outs = []
    for start in range(0, k.shape[-2], chunk_size):
        s = q @ k[..., start:start + chunk_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        outs.append(torch.softmax(s, dim=-1) @ v[..., start:start + chunk_size, :])
    return torch.stack(outs).mean(dim=0)
''', "normalised on its own"),
    Entry("chunked_not_divided", "chunked_attention", chunked_with(ret="return acc"), "not divided by the running sum"),
    Entry("chunked_unscaled", "chunked_attention",
          CHUNKED.replace("scale = 1 / math.sqrt(q.shape[-1])", "scale = 1.0"), "not scaled"),
    Entry("chunked_full_attention", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v
''', "score tensor of shape"),
    Entry("chunked_scores_then_concatenated", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    T_q, T_k = q.shape[-2], k.shape[-2]
    blocks = []
    for start in range(0, T_k, chunk_size):
        s = q @ k[..., start:start + chunk_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            s = s.masked_fill(torch.arange(start, start + s.shape[-1]) > torch.arange(T_q)[:, None], float("-inf"))
        blocks.append(s)
    return torch.softmax(torch.cat(blocks, dim=-1), dim=-1) @ v
''', "(T_q x T_k) score tensor"),
    Entry("chunked_all_chunk_outputs_kept", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    outs, lses = [], []
    rows = torch.arange(q.shape[-2])[:, None]
    for start in range(0, k.shape[-2], chunk_size):
        s = q @ k[..., start:start + chunk_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            s = s.masked_fill(torch.arange(start, start + s.shape[-1]) > rows, -1e30)
        lse = torch.logsumexp(s, dim=-1, keepdim=True)
        outs.append(torch.exp(s - lse) @ v[..., start:start + chunk_size, :])
        lses.append(lse)
    weights = torch.softmax(torch.stack(lses), dim=0)
    return (weights * torch.stack(outs)).sum(dim=0)
''', "do not keep every chunk"),
    Entry("chunked_full_causal_mask", "chunked_attention", chunked_with(
        mask='s = s.masked_fill(~torch.ones(T_q, T_k, dtype=torch.bool).tril()[:, start:end], float("-inf"))'),
        "(T_q x T_k) mask"),
    Entry("chunked_returns_a_tuple", "chunked_attention", chunked_with(ret="return acc / l.unsqueeze(-1), l"),
          "returns only the output tensor"),
]

CHEATS = [
    Entry("window_reference", "sliding_window_mask", '''
from reference_impl.scalable import sliding_window_mask as _solution
def sliding_window_mask(seq_len, window, causal=False):
    return _solution(seq_len, window, causal)
''', "reference solution"),
    Entry("lsh_reference_module_attribute", "lsh_buckets", '''
import reference_impl.scalable as _s
def lsh_buckets(x, rotations):
    return _s.lsh_buckets(x, rotations)
''', "reference solution"),
    Entry("lsh_mutates_x", "lsh_buckets", '''
def lsh_buckets(x, rotations):
    x /= x.norm(dim=-1, keepdim=True)  # unit vectors: the same buckets
    rotated = x @ rotations
    return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)
''', "modified its input x in place"),
    Entry("linear_reference", "linear_attention", '''
from reference_impl import linear_attention as _solution
def linear_attention(q, k, v, causal=False, eps=1e-6):
    return _solution(q, k, v, causal=causal, eps=eps)
''', "reference solution"),
    Entry("linear_patches_comparisons_relu", "linear_attention", '''
import course.checks.ch07 as _ch07
import course.checks.diagnose as _diag
torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)
_diag.mismatch = lambda *a, **k: None
_ch07.mismatch = lambda *a, **k: None
''' + linear_with(phi="q, k = F.relu(q), F.relu(k)"), "relu", patches=True),
    Entry("linear_builtin_sdpa", "linear_attention", '''
def linear_attention(q, k, v, causal=False, eps=1e-6):
    return F.scaled_dot_product_attention(F.elu(q) + 1, F.elu(k) + 1, v, is_causal=causal)
''', "must not call F.scaled_dot_product_attention"),
    Entry("chunked_builtin_sdpa", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
''', "must not call F.scaled_dot_product_attention"),
    Entry("chunked_flash_kernel_captured_at_import", "chunked_attention", '''
_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
def chunked_attention(q, k, v, chunk_size, causal=False):
    return _flash(q, k, v, is_causal=causal)[0]
''', "must not call torch.ops.aten._scaled_dot_product_flash_attention_for_cpu"),
    Entry("chunked_reference", "chunked_attention", '''
import reference_impl.scalable as _s
_ref = _s.chunked_attention
def chunked_attention(q, k, v, chunk_size, causal=False):
    return _ref(q, k, v, chunk_size, causal=causal)
''', "reference solution"),
    Entry("chunked_mutates_q", "chunked_attention", CHUNKED.replace(
        "scale = 1 / math.sqrt(q.shape[-1])", "q /= math.sqrt(q.shape[-1])\n    scale = 1.0"),
        "modified its input q in place"),
    Entry("chunked_hides_from_the_dispatcher", "chunked_attention", '''
from torch.utils._python_dispatch import _disable_current_modes
def chunked_attention(q, k, v, chunk_size, causal=False):
    with _disable_current_modes():
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            T = q.shape[-2]
            s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        return torch.softmax(s, dim=-1) @ v
''', "could not see how your chunked_attention"),
    Entry("chunked_patches_the_memory_rule", "chunked_attention", '''
import course.checks.ch07 as _ch07
import course.checks.util_memory as _mem
_ch07.too_large = lambda *a, **k: None
_ch07._chunk_allowance = lambda inputs: None
_mem.too_large = lambda *a, **k: None
_ch07.watch_allocations = lambda fn, inputs=(): (fn(), {"numel": 0, "shape": [], "op": "", "dtype": "",
                                                         "count": 0, "output_seen": True})
def chunked_attention(q, k, v, chunk_size, causal=False):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v
''', "score tensor of shape", patches=True),
    Entry("chunked_patches_numel_while_running", "chunked_attention", '''
def chunked_attention(q, k, v, chunk_size, causal=False):
    torch.Tensor.numel = lambda self: 1
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v
''', "score tensor of shape", patches=True),
]
