"""The torch engine's prefix cache alone, on small tensors: the longest kept start is found per
adapter, the kept tensors are never changed by prefilling on, and the least recently used prompts
give way past the token bound."""

import torch
from transformers.cache_utils import DynamicCache

from workers.engines.torch_prefix import MIN_REUSE, PrefixCache


def cache_of(ids: list[int]) -> DynamicCache:
    """Two layers whose keys and values at position i are the token id itself (easy to check)."""
    states = torch.tensor(ids, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 2, -1, 4).clone()
    return DynamicCache([(states, states.clone()), (states.clone(), states.clone())])


def test_the_longest_kept_start_is_found_and_stays_as_it_was():
    prefixes = PrefixCache(max_tokens=1000)
    a, b = list(range(100)), [*range(60), *range(500, 540)]
    prefixes.keep(a, None, cache_of(a))
    prefixes.keep(b, None, cache_of(b))
    prefixes.keep(b, None, cache_of(b))  # the same prompt again: kept once
    assert prefixes.tokens == 200
    found = prefixes.longest([*range(80), 7, 7], None)
    assert found is not None and found.get_seq_length() == 80 and prefixes.reused == 80
    assert found.layers[1].keys[0, 0, :, 0].tolist() == list(range(80))
    found.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), 0)  # prefilling on from it
    again = prefixes.longest(a, None)
    assert again is not None and again.layers[0].keys[0, 0, :, 0].tolist() == a
    assert prefixes.longest(a, "an-adapter") is None  # another adapter's KV differs
    assert prefixes.longest([*range(MIN_REUSE - 1), -1, *range(50)], None) is None  # too short a start


def test_past_the_bound_the_least_recently_used_go():
    prefixes = PrefixCache(max_tokens=150)
    a, b, c = list(range(60)), list(range(1000, 1060)), list(range(2000, 2060))
    prefixes.keep(a, None, cache_of(a))
    prefixes.keep(b, "x", cache_of(b))
    assert prefixes.longest(a, None) is not None  # a used: b is now the least recent
    prefixes.keep(c, None, cache_of(c))
    assert prefixes.tokens == 120
    assert prefixes.longest(b, "x") is None and prefixes.longest(a, None) is not None
    prefixes.keep(b, "x", cache_of(b))
    prefixes.forget("x")  # the adapter unloaded: its prompts go
    assert prefixes.longest(b, "x") is None
    prefixes.keep(list(range(151)), None, cache_of(list(range(151))))  # longer than the bound
    assert prefixes.tokens <= 150
