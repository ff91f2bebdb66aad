import torch

from protocol import SamplingParams
from workers.engines.torch_sampling import CANDIDATES, RowSampler, choose_tokens


def samplers(n=4, **params):
    return [
        RowSampler(SamplingParams(**{"temperature": 1.0, "top_p": 1.0, **params}), [1, 2]) for _ in range(n)
    ]


def test_truncation_to_one_token_is_the_argmax_on_both_paths():
    logits = torch.randn(4, 5000)
    best = logits.argmax(-1).tolist()
    assert choose_tokens(logits, samplers(top_k=1)) == best  # cut inside the candidates
    assert choose_tokens(logits, samplers(top_p=1e-9)) == best
    flat = torch.zeros(4, 5000)
    flat[:, 7] = 1e-3  # a nucleus far wider than the candidates takes the full path
    assert all(0 <= t < 5000 for t in choose_tokens(flat, samplers(top_p=0.999)))


def test_the_same_seed_draws_the_same_tokens_and_draws_stay_in_the_nucleus():
    logits = torch.randn(3, 5000) * 4
    a = [choose_tokens(logits, samplers(3, seed=7, top_p=0.5))]
    b = [choose_tokens(logits, samplers(3, seed=7, top_p=0.5))]
    assert a == b
    probs = torch.softmax(logits, -1)
    for row, token in enumerate(a[0]):
        above = probs[row][probs[row] > probs[row, token]].sum()
        assert above < 0.5  # the token is inside the top-p nucleus


def test_the_candidate_distribution_is_the_full_one():
    # a peaked row: top_p cuts inside the candidates, so only candidates can ever be drawn
    logits = torch.randn(1, 5000) * 10
    ranked = logits[0].argsort(descending=True)[:CANDIDATES].tolist()
    draws = {choose_tokens(logits, samplers(1, top_p=0.9))[0] for _ in range(200)}
    assert draws <= set(ranked)


def test_greedy_rows_beside_sampled_rows():
    logits = torch.randn(2, 100)
    mixed = [
        RowSampler(SamplingParams(temperature=0.0), []),
        RowSampler(SamplingParams(temperature=1.0, top_p=1.0), []),
    ]
    assert choose_tokens(logits, mixed)[0] == int(logits[0].argmax())


def test_vanishing_temperatures_are_greedy_not_nan():
    # found by fuzzing the server: 5e-324 made logits / temperature infinite and killed the worker
    logits = torch.randn(3, 5000)
    for temperature in (5e-324, 1e-300, 1e-6):
        rows = [
            RowSampler(SamplingParams(temperature=temperature, top_p=0.5, min_p=0.1), [1]) for _ in range(3)
        ]
        assert choose_tokens(logits, rows) == logits.argmax(-1).tolist()


def test_vanishing_top_p_keeps_the_most_likely_token():
    # found by fuzzing: top_p 5e-324 is 0 in float32 and masked every token
    logits = torch.randn(2, 5000)
    assert choose_tokens(logits, samplers(2, top_p=5e-324)) == logits.argmax(-1).tolist()
    flat = torch.zeros(1, 5000)  # a flat row takes the full-vocabulary path
    assert 0 <= RowSampler(SamplingParams(temperature=1.0, top_p=5e-324), []).choose(flat[0]) < 5000
