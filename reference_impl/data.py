"""Toy data sets, all made in code (nothing is downloaded) and deterministic given a seed.

Public names:
- The detective case task: `CASE_RULES`, `DISTRACTOR_CLUES`, `SUSPECTS`, `CASE_VOCAB`,
  `make_case_dataset(n, seed, n_evidence, n_case_types, n_suspects)`, `describe_case(tokens)`.
- Associative recall: `make_recall_dataset(n, n_pairs, seed, n_keys, n_values, query_index)`.
- Remember-the-first-token copy task: `make_copy_dataset(n, distance, seed, n_symbols, n_noise)`.
- scikit-learn's bundled 8x8 digits: `load_digits_split(test_size, seed)`.
"""

import torch

# ----------------------------------------------------------------------------------------
# The detective case task

CASE_RULES = {  # case type -> the clue type that solves it
    "burglary": "footprint",
    "poisoning": "motive",
    "forgery": "fingerprint",
    "kidnapping": "witness",
}
DISTRACTOR_CLUES = ("rumour", "hunch")  # clue types that never decide a case
SUSPECTS = ("A", "B", "C", "D", "E", "F")
_CLUE_TYPES = tuple(CASE_RULES.values()) + DISTRACTOR_CLUES
# The vocabulary is the same whatever the data set's options: case-type tokens first, then
# one "clue:suspect" token per clue type and suspect.
CASE_VOCAB = list(CASE_RULES) + [f"{clue}:{s}" for clue in _CLUE_TYPES for s in SUSPECTS]


def _clue_token(clue_index, suspect):
    """Token id of clue type number `clue_index` (in _CLUE_TYPES) naming `suspect` (an int or tensor)."""
    return len(CASE_RULES) + clue_index * len(SUSPECTS) + suspect


def make_case_dataset(n, seed=0, n_evidence=6, n_case_types=3, n_suspects=4):
    """Detective cases: who did it?

    Each sequence is `[case type, evidence_1, ..., evidence_{n_evidence}]` (T = 1 + n_evidence)
    with tokens from CASE_VOCAB. The rules:
    - the case type is one of the first `n_case_types` keys of CASE_RULES, uniformly
      (burglary, poisoning, forgery[, kidnapping]);
    - the evidence holds exactly one clue of each of those case types' clue types
      (footprint, motive, fingerprint[, witness]), each naming a different suspect, plus
      `n_evidence - n_case_types` distractor clues (rumour / hunch) that name any of the
      `n_suspects` suspects uniformly (so counting mentions does not help);
    - the evidence is shuffled, so the deciding clue sits at a different position every time;
    - the culprit is the suspect named by the clue that matters for the case type
      (burglary -> footprint, poisoning -> motive, forgery -> fingerprint, kidnapping -> witness).
    A model must combine the case type with the right piece of evidence: reading the
    evidence without the case type can do no better than 1 / n_case_types.

    Returns (tokens LongTensor (n, 1 + n_evidence), culprit LongTensor (n,)) with culprit an
    index into SUSPECTS (0 = "A"). The vocabulary size is len(CASE_VOCAB).
    """
    if not 1 <= n_case_types <= len(CASE_RULES):
        raise ValueError(f"n_case_types must be in 1..{len(CASE_RULES)}")
    if not n_case_types <= n_suspects <= len(SUSPECTS):
        raise ValueError(f"n_suspects must be in {n_case_types}..{len(SUSPECTS)}")
    if n_evidence < n_case_types:
        raise ValueError("n_evidence must be at least n_case_types (one deciding clue per case type)")
    g = torch.Generator().manual_seed(seed)
    case = torch.randint(n_case_types, (n,), generator=g)  # (n,)
    # Clue type j (footprint, motive, ...) names suspect named[:, j]; all different.
    named = torch.rand(n, n_suspects, generator=g).argsort(dim=-1)[:, :n_case_types]  # (n, K)
    relevant = _clue_token(torch.arange(n_case_types), named)  # (n, K)
    n_distract = n_evidence - n_case_types
    distract_type = len(CASE_RULES) + torch.randint(len(DISTRACTOR_CLUES), (n, n_distract), generator=g)
    distract_suspect = torch.randint(n_suspects, (n, n_distract), generator=g)
    distract = _clue_token(distract_type, distract_suspect)  # (n, n_distract)
    evidence = torch.cat([relevant, distract], dim=1)  # (n, n_evidence)
    order = torch.rand(n, n_evidence, generator=g).argsort(dim=-1)
    evidence = evidence.gather(1, order)  # shuffled: the deciding clue moves around
    tokens = torch.cat([case.unsqueeze(1), evidence], dim=1)  # case-type token ids are 0..3
    culprit = named.gather(1, case.unsqueeze(1)).squeeze(1)  # (n,)
    return tokens, culprit


def describe_case(tokens, culprit=None):
    """One case as text, e.g. 'burglary | motive:B footprint:A rumour:C -> culprit A'.

    tokens: a (T,) LongTensor or list of ids from make_case_dataset; culprit: optional index
    into SUSPECTS.
    """
    words = [CASE_VOCAB[int(t)] for t in tokens]
    text = f"{words[0]} | " + " ".join(words[1:])
    if culprit is not None:
        text += f" -> culprit {SUSPECTS[int(culprit)]}"
    return text


# ----------------------------------------------------------------------------------------
# Associative recall and copying over a distance


def make_recall_dataset(n, n_pairs=8, seed=0, n_keys=16, n_values=16, query_index=None):
    """Associative recall: `k_1 v_1 k_2 v_2 ... k_P v_P q`, answer the value stored under q.

    Keys in a sequence are distinct (token ids 0..n_keys-1); values are any of n_values
    (token ids n_keys..n_keys+n_values-1); the query q is the key of pair number
    `query_index` (0 = the oldest pair; None = a random pair per sequence). The query sits
    2 * (n_pairs - query_index) - 1 tokens after its value: vary query_index to measure
    accuracy against distance.

    Returns (tokens LongTensor (n, 2 * n_pairs + 1), target LongTensor (n,)) where target is
    the value's index in 0..n_values-1. The vocabulary size is n_keys + n_values.
    """
    if n_pairs > n_keys:
        raise ValueError("n_pairs must not exceed n_keys (keys are distinct)")
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(n, n_keys, generator=g).argsort(dim=-1)[:, :n_pairs]  # (n, P) distinct
    values = torch.randint(n_values, (n, n_pairs), generator=g)  # (n, P)
    if query_index is None:
        which = torch.randint(n_pairs, (n,), generator=g)  # (n,)
    else:
        which = torch.full((n,), query_index, dtype=torch.long)
    pairs = torch.stack([keys, n_keys + values], dim=2).reshape(n, 2 * n_pairs)  # k1 v1 k2 v2 ...
    query = keys.gather(1, which.unsqueeze(1))  # (n, 1)
    tokens = torch.cat([pairs, query], dim=1)  # (n, 2P + 1)
    target = values.gather(1, which.unsqueeze(1)).squeeze(1)  # (n,)
    return tokens, target


def make_copy_dataset(n, distance, seed=0, n_symbols=8, n_noise=8):
    """Remember the first token: `s, noise_1 ... noise_distance, ?` -> s.

    s is one of n_symbols (token ids 0..n_symbols-1), the `distance` noise tokens are drawn
    uniformly from n_noise fillers (ids n_symbols..n_symbols+n_noise-1) and the last token is
    the question mark (id n_symbols + n_noise). An RNN must carry s through `distance`
    hand-overs; attention can look straight back at it.

    Returns (tokens LongTensor (n, distance + 2), target LongTensor (n,)) with target = s.
    The vocabulary size is n_symbols + n_noise + 1.
    """
    g = torch.Generator().manual_seed(seed)
    symbol = torch.randint(n_symbols, (n,), generator=g)  # (n,)
    noise = n_symbols + torch.randint(n_noise, (n, distance), generator=g)  # (n, distance)
    question = torch.full((n, 1), n_symbols + n_noise, dtype=torch.long)
    tokens = torch.cat([symbol.unsqueeze(1), noise, question], dim=1)  # (n, distance + 2)
    return tokens, symbol


# ----------------------------------------------------------------------------------------
# Handwritten digits (bundled with scikit-learn)


def load_digits_split(test_size=0.25, seed=0):
    """scikit-learn's 1797 8x8 digits as tensors, split with stratification.

    Returns X_train (N, 1, 8, 8) float32 in [0, 1], y_train (N,) long, X_test, y_test.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_size, random_state=seed, stratify=digits.target
    )
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    return X[idx_train], y[idx_train], X[idx_test], y[idx_test]
