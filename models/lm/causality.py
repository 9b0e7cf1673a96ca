"""The causality check every language model in the project must pass.

Why: vocabulary-space v8's published figures came from a reversed mask that let position t
read token t+1 (its target). The check is behavioural, so it catches any leak whatever the
code looks like: change token j and every logit at positions before j must stay bit-identical.

API
---
leaks(logits_fn, ids, positions) -> list[int]   positions j whose change moved an earlier logit
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


@torch.no_grad()
def leaks(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    ids: torch.Tensor,
    positions: Iterable[int],
    vocab: int,
) -> list[int]:
    """Positions j (1 <= j < T) where replacing ids[:, j] changed any logit at a position < j."""
    base = logits_fn(ids)
    bad = []
    for j in positions:
        changed = ids.clone()
        changed[:, j] = (changed[:, j] + 1 + j % (vocab - 1)) % vocab
        after = logits_fn(changed)
        if not torch.equal(base[:, :j], after[:, :j]):
            bad.append(j)
    return bad
