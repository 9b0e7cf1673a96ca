"""Program transforms that keep every output bit: dead-instruction removal and scratch reuse.

The builder writes every token of every block, and gives every intermediate vector its own
scratch words. For the predictor step only the last token leaves the last block, so part
of the program computes words nobody reads; and the memory is ~10K words deep although
a few hundred are live at any time. Both cost the batched engine directly: cycles per
batch, and one data memory per sample slot.

- `prune` drops every instruction none of whose written words is read later (or is an
  output): backward liveness over words.
- `compact` moves the builder's scratch blocks (`meta["scratch"]`, their sizes in order)
  so that blocks whose lifetimes (first to last instruction touching them) overlap never
  share a word: first fit, in order of first use. It refuses a program that reads a
  scratch word before writing it (a moved block would then see another block's data).

The result computes the same output words for every input (tests/test_stream_compact.py
checks it on real windows and random programs).
"""

from __future__ import annotations

from dataclasses import replace

from .isa import BIT_WORD, REDUCTIONS, FoldedProgram, Instr, Op


def touches(prog: FoldedProgram, ins: Instr) -> tuple[range | list, list]:
    """(words read, words written) by one instruction."""
    if ins.op is Op.BREAD:
        return [ins.a, ins.b], list(range(ins.dst, ins.dst + BIT_WORD * ins.n))
    if ins.op is Op.BWRITE:  # writes the bit memory only, never a data word
        return [ins.a, *range(ins.b, ins.b + BIT_WORD * ins.n)], []
    if ins.op is Op.LIN:
        lin = prog.linears[ins.arg].linear
        return (
            list(range(ins.a, ins.a + lin.in_features)),
            list(range(ins.dst, ins.dst + lin.out_features)),
        )
    reads = list(prog.span(ins.a, ins.n, ins.sa))
    if ins.op not in (Op.LUT, Op.ARGMAX):
        reads += list(prog.span(ins.b, ins.n, ins.sb))
    one = ins.op in REDUCTIONS or ins.op is Op.ARGMAX
    return reads, list(prog.span(ins.dst, 1 if one else ins.n, ins.sd))


def _rebuild(prog: FoldedProgram, instrs: list[Instr], **kw) -> FoldedProgram:
    return FoldedProgram(
        prog.name,
        prog.word_bits,
        prog.frac_bits,
        kw.get("depth", prog.depth),
        instrs,
        prog.tables,
        prog.linears,
        prog.const,
        kw.get("inputs", prog.inputs),
        kw.get("outputs", prog.outputs),
        kw.get("meta", dict(prog.meta)),
        prog.bit_depth,
    )


def prune(prog: FoldedProgram) -> FoldedProgram:
    """The program without instructions whose results are never read. BWRITE is always
    kept: its result is the bit memory, which outlives the run."""
    live = {a + k for a, n in prog.outputs.values() for k in range(n)}
    keep: list[Instr] = []
    for ins in reversed(prog.instrs):
        reads, writes = touches(prog, ins)
        if ins.op is not Op.BWRITE and not live.intersection(writes):
            continue
        live.difference_update(writes)
        live.update(reads)
        keep.append(ins)
    return _rebuild(prog, keep[::-1])


def compact(prog: FoldedProgram) -> FoldedProgram:
    """The program with its scratch blocks packed by lifetime (see the module docstring)."""
    sizes = prog.meta.get("scratch")
    if not sizes:
        raise ValueError(f"program {prog.name!r} has no scratch block list (meta['scratch'])")
    base = prog.n_const
    starts = [base]
    for n in sizes:
        starts.append(starts[-1] + n)
    if starts[-1] != prog.depth:
        raise ValueError("scratch blocks do not tile the memory after the constants")
    owner = {}
    for b, (s, e) in enumerate(zip(starts, starts[1:], strict=False)):
        owner.update(dict.fromkeys(range(s, e), b))
    end = len(prog.instrs)
    first, last = [end + 1] * len(sizes), [-2] * len(sizes)
    for k, (name, (a, n)) in enumerate([*prog.inputs.items(), *prog.outputs.items()]):
        for w in range(a, a + n):
            b = owner.get(w)
            if b is None:
                raise ValueError(f"port {name!r} is not in scratch")
            if k < len(prog.inputs):
                first[b] = -1
            else:
                last[b] = end
    written = {w for a, n in prog.inputs.values() for w in range(a, a + n)}
    for k, ins in enumerate(prog.instrs):
        reads, writes = touches(prog, ins)
        for w in reads:
            if w >= base and w not in written:
                raise ValueError(f"instruction {k} ({ins.note}) reads scratch word {w} unwritten")
        written.update(writes)
        for w in (*reads, *writes):
            b = owner.get(w)
            if b is not None:
                first[b], last[b] = min(first[b], k), max(last[b], k)
    placed: list[tuple[int, int, int, int]] = []  # (lo, hi, first, last)
    new_start = [0] * len(sizes)
    for b in sorted(range(len(sizes)), key=lambda b: (first[b], b)):
        if last[b] < first[b]:  # never touched: give it no words
            new_start[b] = base
            continue
        busy = sorted((lo, hi) for lo, hi, f, la in placed if f <= last[b] and first[b] <= la)
        at = base
        for lo, hi in busy:
            if at + sizes[b] <= lo:
                break
            at = max(at, hi)
        new_start[b] = at
        placed.append((at, at + sizes[b], first[b], last[b]))
    depth = max([base + 1] + [hi for _, hi, _, _ in placed])

    def move(addr: int) -> int:
        b = owner.get(addr)
        return addr if b is None else addr - starts[b] + new_start[b]

    def move_span(addr: int, n: int, stride: int) -> int:
        # a span lies inside one block (the builder's views never cross blocks); check it
        if n > 1 and stride and owner.get(addr) != owner.get(addr + (n - 1) * stride):
            raise ValueError(f"a span at {addr} crosses scratch blocks")
        return move(addr)

    instrs = []
    for ins in prog.instrs:
        if ins.op is Op.LIN:
            a = move_span(ins.a, prog.linears[ins.arg].linear.in_features, 1)
        else:
            a = move_span(ins.a, ins.n, ins.sa)
        instrs.append(replace(ins, dst=move(ins.dst), a=a, b=move(ins.b)))
    meta = dict(prog.meta)
    meta["scratch"] = [depth - base]  # one block: a compacted program is not compacted again
    return _rebuild(
        prog,
        instrs,
        depth=depth,
        inputs={k: (move(a), n) for k, (a, n) in prog.inputs.items()},
        outputs={k: (move(a), n) for k, (a, n) in prog.outputs.items()},
        meta=meta,
    )


def streamlined(prog: FoldedProgram) -> FoldedProgram:
    """prune, then compact: the program the batched engine runs."""
    return compact(prune(prog))
