"""The integer golden of the hardware variant: ROM read, shift-add EMAs, hwgen's read-out, argmax.

Why: this is the bit-exact reference a generation circuit must match, and the model whose
bits per byte is the "Q4" figure: the read-out is the very integer program `hwgen rtl`
builds from the exported checkpoint (same quantization, calibration and lowering calls), the
ROM holds the features in that program's input format, and the EMAs run in integers:
    H_k <- H_k + ((Z - H_k) >> k),  Z = rom[token] << G,  feature_k = H_k >> G
(arithmetic shifts, G guard bits), so hardware needs only subtractors, wires and adders.

API
---
HwGolden.load(readout_dir, act_bits=8) -> HwGolden
golden.features(ids int64 [B, T]) -> int64 [B, T, F]   (EMA state starts at 0 per row)
golden.logits(ids) -> float logits (integer outputs x 2^-frac)  for bpb.evaluate
golden.generate(prompt, steps) -> list[int]   greedy, ties to the lowest token id
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwgen import golden
from hwgen.arith.fixed import saturate
from hwgen.checkpoint import CheckpointError, load_mlp_checkpoint, read_tensors
from hwgen.design import RtlOptions, calibration_inputs, float_layers
from hwgen.ir import Program
from hwgen.lower import LoweringOptions, lower

GUARD_BITS = 8


@dataclass
class HwGolden:
    program: Program
    rom: np.ndarray  # int64 [V, r], in the program's input format
    shifts: tuple[int, ...]

    @classmethod
    def load(cls, readout: Path, act_bits: int = 8) -> HwGolden:
        """The program exactly as `hwgen rtl --act-bits` lowers it, and the integer ROM."""
        readout = Path(readout)
        ckpt = load_mlp_checkpoint(readout)
        opts = RtlOptions(lowering=LoweringOptions(act_bits=act_bits))
        calib, _ = calibration_inputs(ckpt, opts.n_calibration, opts.seed)
        program = lower(readout.name, float_layers(ckpt), calib, opts.lowering)
        lm = ckpt.config.get("lm", {})
        shifts = tuple(lm.get("shifts", ()))
        if not shifts or not all(type(k) is int and 0 <= k <= 16 for k in shifts):
            raise CheckpointError(f"{readout}/config.json: 'lm.shifts' must list shifts 0..16")
        rank = ckpt.layer_sizes[0] // len(shifts)
        vocab = ckpt.layer_sizes[-1]
        rom_f = read_tensors(readout / "rom.safetensors", {"rom": ((vocab, rank), "f")})["rom"]
        fmt = program.input_format
        rom = saturate(np.rint(rom_f.astype(np.float64) * 2.0**fmt.frac_bits), fmt.width)
        return cls(program, rom.astype(np.int64), shifts)

    def features(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        b, t = ids.shape
        state = np.zeros((len(self.shifts), b, self.rom.shape[1]), dtype=np.int64)
        out = np.empty((b, t, len(self.shifts) * self.rom.shape[1]), dtype=np.int64)
        for i in range(t):
            z = self.rom[ids[:, i]] << GUARD_BITS
            for n, k in enumerate(self.shifts):
                state[n] += (z - state[n]) >> k
            out[:, i] = np.concatenate(list(state >> GUARD_BITS), axis=-1)
        return out

    def int_logits(self, feats: np.ndarray) -> np.ndarray:
        shape = feats.shape[:-1]
        y = golden.run(self.program, feats.reshape(-1, feats.shape[-1]))
        return y.reshape(*shape, -1)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        y = self.int_logits(self.features(ids.numpy()))
        frac = self.program.layers[-1].requant.out_format.frac_bits
        return torch.from_numpy(y * 2.0**-frac)

    def generate(self, prompt: list[int], steps: int) -> list[int]:
        """`steps` greedy tokens after the prompt, fed back one at a time as the circuit runs."""
        state = np.zeros((len(self.shifts), self.rom.shape[1]), dtype=np.int64)
        tokens = list(prompt)
        for i in range(len(prompt) + steps - 1):
            z = self.rom[tokens[i]] << GUARD_BITS
            for n, k in enumerate(self.shifts):
                state[n] += (z - state[n]) >> k
            if i >= len(prompt) - 1:
                feats = np.concatenate(list(state >> GUARD_BITS))[None]
                tokens.append(int(np.argmax(golden.run(self.program, feats)[0])))
        return tokens[len(prompt) :]
