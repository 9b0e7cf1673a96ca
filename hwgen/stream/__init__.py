"""The batched LeWM predictor engine: many independent windows through one instruction stream.

The folded engine (hwgen/folded) runs one window per program run. The batched engine is
the same engine with `slots` sample slots (FoldedEngine(prog, lanes, slots)): one
controller, program ROM and weight ROM drive `slots` copies of the per-sample datapath,
so every instruction fetch and weight read serves `slots` windows, and the per-sample
arithmetic - hence the golden model - is unchanged. The program is first streamlined
(hwgen/folded/compact.py: dead instructions removed, scratch packed), which shrinks both
the cycles and the per-slot memory.

- model.py: exact cycle model, resource estimate, the per-board choice of (lanes, slots)
  and the printed plan;
- golden.py: the engine's golden model on a batch of windows, and cycles per prediction,
  for planners that put the hardware in the loop.
"""
