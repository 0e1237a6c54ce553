"""Toy data: deterministic given a seed, and the task rules hold on every example."""

from collections import Counter

import pytest
import torch

from reference_impl.data import (
    CASE_RULES,
    CASE_VOCAB,
    DISTRACTOR_CLUES,
    SUSPECTS,
    describe_case,
    load_digits_split,
    make_case_dataset,
    make_copy_dataset,
    make_recall_dataset,
)


# ----------------------------------------------------------------------------------------
# The detective case task


def _decode(row):
    """(case type, [(clue, suspect), ...]) from one row of token ids, via the vocabulary's strings."""
    words = [CASE_VOCAB[int(t)] for t in row]
    return words[0], [tuple(w.split(":")) for w in words[1:]]


def test_case_dataset_is_deterministic():
    a, b = make_case_dataset(200, seed=3), make_case_dataset(200, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = make_case_dataset(200, seed=4)
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    "n_evidence,n_case_types,n_suspects", [(6, 3, 4), (3, 3, 3), (8, 4, 6), (5, 2, 5), (1, 1, 1)]
)
def test_case_dataset_follows_the_rules(n_evidence, n_case_types, n_suspects):
    tokens, culprit = make_case_dataset(300, seed=0, n_evidence=n_evidence, n_case_types=n_case_types, n_suspects=n_suspects)
    assert tokens.shape == (300, 1 + n_evidence) and tokens.dtype == torch.long
    assert culprit.shape == (300,) and culprit.dtype == torch.long
    case_types = list(CASE_RULES)[:n_case_types]
    deciding_clues = [CASE_RULES[c] for c in case_types]
    for row, who in zip(tokens, culprit):
        case, evidence = _decode(row)
        assert case in case_types
        assert all(":" not in CASE_VOCAB[int(t)] for t in row[:1])
        clues = [clue for clue, _ in evidence]
        # One clue of each deciding type, naming different suspects; the rest are distractors.
        assert sorted(c for c in clues if c in deciding_clues) == sorted(deciding_clues)
        assert all(c in deciding_clues or c in DISTRACTOR_CLUES for c in clues)
        named = [s for clue, s in evidence if clue in deciding_clues]
        assert len(set(named)) == n_case_types
        assert all(SUSPECTS.index(s) < n_suspects for _, s in evidence)
        # The culprit is the suspect named by the clue that matters for this case type.
        (decisive,) = [s for clue, s in evidence if clue == CASE_RULES[case]]
        assert SUSPECTS[int(who)] == decisive


def test_case_dataset_needs_the_case_type():
    tokens, culprit = make_case_dataset(2000, seed=0, n_evidence=6, n_case_types=3, n_suspects=4)
    evidence = [_decode(row)[1] for row in tokens]
    # With the case type swapped, the same evidence names a different culprit every time, so
    # any rule that reads only the evidence is right for at most one of the 3 case types.
    for ev in evidence:
        answers = {dict(ev)[CASE_RULES[c]] for c in list(CASE_RULES)[:3]}
        assert len(answers) == 3
    # Concretely: always trusting one clue type, or the most-mentioned suspect, is near chance.
    for clue in ("footprint", "motive", "fingerprint"):
        acc = sum(SUSPECTS[int(w)] == dict(ev)[clue] for ev, w in zip(evidence, culprit)) / len(culprit)
        assert 0.25 < acc < 0.42
    most_mentioned = [Counter(s for _, s in ev).most_common(1)[0][0] for ev in evidence]
    acc = sum(SUSPECTS[int(w)] == s for s, w in zip(most_mentioned, culprit)) / len(culprit)
    assert acc < 0.42
    # Every case type and every culprit occurs, and the deciding clue moves around.
    assert set(tokens[:, 0].tolist()) == {0, 1, 2}
    assert set(culprit.tolist()) == {0, 1, 2, 3}
    positions = {[c for c, _ in ev].index(CASE_RULES[CASE_VOCAB[int(row[0])]]) for ev, row in zip(evidence, tokens)}
    assert positions == set(range(6))


def test_case_dataset_rejects_impossible_settings():
    with pytest.raises(ValueError):
        make_case_dataset(10, n_case_types=5)
    with pytest.raises(ValueError):
        make_case_dataset(10, n_case_types=3, n_suspects=2)
    with pytest.raises(ValueError):
        make_case_dataset(10, n_evidence=2, n_case_types=3)


def test_describe_case():
    tokens, culprit = make_case_dataset(5, seed=1)
    text = describe_case(tokens[0], culprit[0])
    case, evidence = _decode(tokens[0])
    assert text.startswith(case + " | ")
    assert all(f"{clue}:{s}" in text for clue, s in evidence)
    assert text.endswith(f"-> culprit {SUSPECTS[int(culprit[0])]}")
    assert "culprit" not in describe_case(tokens[0].tolist())
    assert len(CASE_VOCAB) == len(set(CASE_VOCAB))


# ----------------------------------------------------------------------------------------
# Recall and copy


@pytest.mark.parametrize("n_pairs,n_keys,n_values", [(8, 16, 16), (1, 1, 3), (5, 9, 4)])
def test_recall_dataset_rules(n_pairs, n_keys, n_values):
    tokens, target = make_recall_dataset(400, n_pairs=n_pairs, seed=2, n_keys=n_keys, n_values=n_values)
    assert tokens.shape == (400, 2 * n_pairs + 1) and target.shape == (400,)
    keys, values, query = tokens[:, 0:-1:2], tokens[:, 1:-1:2], tokens[:, -1]
    assert (keys < n_keys).all() and (values >= n_keys).all() and (values < n_keys + n_values).all()
    assert (query < n_keys).all()
    for k, v, q, t in zip(keys.tolist(), values.tolist(), query.tolist(), target.tolist()):
        assert len(set(k)) == n_pairs  # distinct keys: the answer is unambiguous
        assert q in k
        assert v[k.index(q)] - n_keys == t


def test_recall_dataset_determinism_and_query_index():
    a, b = make_recall_dataset(100, seed=5), make_recall_dataset(100, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], make_recall_dataset(100, seed=6)[0])
    for i in (0, 3, 7):
        tokens, target = make_recall_dataset(50, n_pairs=8, seed=0, query_index=i)
        assert torch.equal(tokens[:, -1], tokens[:, 2 * i])
        assert torch.equal(target, tokens[:, 2 * i + 1] - 16)
    # A random query index covers every pair.
    tokens, _ = make_recall_dataset(500, n_pairs=8, seed=0)
    which = (tokens[:, 0:-1:2] == tokens[:, -1:]).float().argmax(dim=1)
    assert set(which.tolist()) == set(range(8))
    with pytest.raises(ValueError):
        make_recall_dataset(10, n_pairs=5, n_keys=4)


@pytest.mark.parametrize("distance", [0, 1, 10, 50])
def test_copy_dataset_rules(distance):
    tokens, target = make_copy_dataset(300, distance, seed=0, n_symbols=5, n_noise=7)
    assert tokens.shape == (300, distance + 2)
    assert torch.equal(tokens[:, 0], target) and (target < 5).all()
    assert ((tokens[:, 1:-1] >= 5) & (tokens[:, 1:-1] < 12)).all()
    assert (tokens[:, -1] == 12).all()
    again = make_copy_dataset(300, distance, seed=0, n_symbols=5, n_noise=7)
    assert torch.equal(tokens, again[0])
    assert set(target.tolist()) == set(range(5))


# ----------------------------------------------------------------------------------------
# Digits


def test_load_digits_split():
    X_train, y_train, X_test, y_test = load_digits_split(test_size=0.25, seed=0)
    assert X_train.shape[1:] == (1, 8, 8) and X_test.shape[1:] == (1, 8, 8)
    assert len(X_train) + len(X_test) == 1797 and len(X_test) == 450
    assert X_train.dtype == torch.float32 and y_train.dtype == torch.long
    assert X_train.min() >= 0 and X_train.max() == 1 and X_test.max() <= 1
    assert set(y_train.tolist()) == set(range(10)) == set(y_test.tolist())
    # Stratified: every class is about a quarter in the test split.
    counts = torch.bincount(y_test, minlength=10).float() / torch.bincount(torch.cat([y_train, y_test])).float()
    assert ((counts - 0.25).abs() < 0.02).all()
    again = load_digits_split(test_size=0.25, seed=0)
    assert torch.equal(X_train, again[0]) and torch.equal(y_test, again[3])
    other = load_digits_split(test_size=0.25, seed=1)
    assert not torch.equal(y_test, other[3])
    # No image is in both splits.
    train_rows = {tuple(x.flatten().tolist()) for x in X_train}
    overlap = sum(tuple(x.flatten().tolist()) in train_rows for x in X_test)
    assert overlap == 0  # (the 1797 raw images are all different)
