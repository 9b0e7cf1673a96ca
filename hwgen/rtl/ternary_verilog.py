"""Three-operand adders as instantiated 7-series cells: one LUT6_2 per bit on a CARRY4 chain.

Per result bit i the LUT sees a_i, b_i, c_i (inverted in its truth table where the
operand is subtracted) and m_(i-1), the majority of bit i-1 computed on the O5 output of
the LUT below: O5 = maj(a_i, b_i, c_i) goes up to the next LUT, O6 = a_i ^ b_i ^ c_i ^
m_(i-1) is the CARRY4's propagate S_i, and m_(i-1) is its DI_i (when S_i is 0 the carry
out is a_i ^ b_i ^ c_i, which then equals m_(i-1)). So a + b + c = x + 2m is summed by
the carry chain at one LUT per bit (UG474's CARRY4; the ternary adder of Kumm and
Zipf). A LUT6_2's O5 is its table with I5 = 0, so I5 is tied high and the two outputs
are independent 5-input functions.

Subtracted operands are inverted and corrected by +1 each: the chain's carry-in
(CYINIT) and the m_(-1) input of its lowest LUT each add one at its lowest bit, so the
at most two subtracted operands are exact with no extra logic (arith/adder_graph keeps
at most two). Bits below the second-lowest operand shift, where only one operand that is
not subtracted has non-zero bits, are wiring. Simulators need models of LUT6_2 and
CARRY4 (sim/xilinx_prims.v); synthesis sees the real primitives.
"""

from __future__ import annotations

from functools import cache

from ..arith.adder_graph import Node, ternary_low_bits


@cache
def lut_init(neg_b: bool, neg_c: bool) -> int:
    """The LUT6_2 INIT: O5 (I5 = 0 half) majority, O6 (I5 = 1 half) the sum bit."""
    init = 0
    for idx in range(64):
        a, b, c, m = idx & 1, (idx >> 1 & 1) ^ neg_b, (idx >> 2 & 1) ^ neg_c, idx >> 3 & 1
        bit = (a ^ b ^ c ^ m) if idx >> 5 else int(a + b + c >= 2)
        init |= bit << idx
    return init


def add3_module(name: str) -> str:
    """The Verilog module `name`: s = a + b + c (+ CI + M0) over N bits, in cells."""
    return f"""module {name} #(
  parameter N = 1,
  parameter [63:0] INIT = 64'h0,
  parameter [0:0] CI = 1'b0,
  parameter [0:0] M0 = 1'b0
) (
  input wire [N-1:0] a,
  input wire [N-1:0] b,
  input wire [N-1:0] c,
  output wire [N-1:0] s
);
  localparam K = (N + 3) / 4;
  wire [4*K-1:0] p;
  wire [N:0] m;
  wire [4*K-1:0] di;
  wire [4*K-1:0] o;
  wire [4*K:0] co;
  assign m[0] = M0;
  assign co[0] = 1'b0;
  genvar i;
  generate
    for (i = 0; i < 4*K; i = i + 1) begin : bits
      if (i < N) begin : lut
        LUT6_2 #(.INIT(INIT)) lut6 (
          .O6(p[i]), .O5(m[i+1]),
          .I0(a[i]), .I1(b[i]), .I2(c[i]), .I3(m[i]), .I4(1'b0), .I5(1'b1)
        );
        assign di[i] = m[i];
      end else begin : pad
        assign p[i] = 1'b0;
        assign di[i] = 1'b0;
      end
    end
    for (i = 0; i < K; i = i + 1) begin : chain
      wire [3:0] cout;
      CARRY4 carry4 (
        .CO(cout), .O(o[4*i+3:4*i]), .CI(co[4*i]), .CYINIT(i == 0 ? CI : 1'b0),
        .DI(di[4*i+3:4*i]), .S(p[4*i+3:4*i])
      );
      assign co[4*i+4:4*i+1] = cout;
    end
  endgenerate
  assign s = o[N-1:0];
endmodule
"""


def add3_instance(i: int, n: Node, names: list[str], module: str) -> tuple[list[str], str]:
    """Declarations and cell instance of node `i`, and the expression of its value."""
    w = n.width
    low = ternary_low_bits(n)
    ops = ((n.a, n.a_shift), (n.b, n.b_shift), (n.c, n.c_shift))
    decl = []
    for tag, (src, shift) in zip("abc", ops, strict=True):
        value = f"{names[src]} <<< {shift}" if shift else names[src]
        decl.append(f"  wire [{w - 1}:0] n{i}_{tag} = {value};")
    lowest = "abc"[min(range(3), key=lambda k: ops[k][1])]
    low_bits = f"n{i}_{lowest}[{low - 1}:0]" if low else ""
    if low == w:
        return decl, low_bits
    neg = int(n.sub) + int(n.c_sub)
    chain = f"{w - 1}:{low}"
    decl += [
        f"  wire [{w - low - 1}:0] n{i}_s;",
        f"  {module} #(.N({w - low}), .INIT(64'h{lut_init(n.sub, n.c_sub):016x}), "
        f".CI(1'b{int(neg >= 1)}), .M0(1'b{int(neg == 2)})) u{i} "
        f"(.a(n{i}_a[{chain}]), .b(n{i}_b[{chain}]), .c(n{i}_c[{chain}]), .s(n{i}_s));",
    ]
    return decl, f"{{n{i}_s, {low_bits}}}" if low else f"n{i}_s"
