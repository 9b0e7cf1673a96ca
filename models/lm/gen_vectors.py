"""Test vectors for `hwgen sim` from a greedy generation of the hardware variant's golden.

Why: the RTL read-out is checked on exactly the inputs a generating circuit feeds it. The
golden generates `steps` tokens greedily; the features of every step become the vectors'
inputs and the golden read-out's logits their expected outputs (hwgen's own vector format),
so `hwgen sim DESIGN --vectors OUT.npz` checks all steps bit for bit. The argmax of each
expected row is asserted to be the generated token, so a pass means the RTL read-out would
have produced the same text.

CLI: python -m hwgen.models.lm.gen_vectors READOUT_DIR OUT.npz [--steps 10000] [--act-bits 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hwgen.vectors import write_vectors

from .hw_golden import HwGolden
from .tokenizer import encode_plays, load_tokenizer

PROMPT = "ACT I.\n\nScene I. A heath.\n\n"


def generation_vectors(gold: HwGolden, prompt: list[int], steps: int) -> tuple[list, np.ndarray]:
    """(generated tokens, int64 [steps, features]: the read-out input at each step)."""
    tokens = gold.generate(prompt, steps)
    fed = np.array([prompt + tokens[:-1]])
    feats = gold.features(fed)[0, len(prompt) - 1 :]
    return tokens, feats


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("readout", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--act-bits", type=int, default=8)
    a = p.parse_args(argv)
    gold = HwGolden.load(a.readout, a.act_bits)
    sp = load_tokenizer(gold.rom.shape[0])
    prompt = [int(t) for t in encode_plays(sp, {"p": PROMPT})["p"]]
    tokens, feats = generation_vectors(gold, prompt, a.steps)
    expected = write_vectors(a.out, gold.program, feats)
    if list(np.argmax(expected, axis=1)) != tokens:
        raise SystemExit("golden read-out and generation disagree")
    print(f"wrote {a.out}: {a.steps} steps; text begins {sp.decode(tokens[:60])!r}")


if __name__ == "__main__":
    main()
