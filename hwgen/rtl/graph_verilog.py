"""Emit a solved layer (LayerGraph) directly as Verilog text: one module, fast to write.

Amaranth builds ~2 ms of Python objects per adder; writing the same netlist as text is
two orders of magnitude faster and gives simulators a compact design (one continuous
assignment per combinational adder, one clocked block for all registers). The module is
instantiated from Amaranth (rtl/linear.py), so the design stays an Amaranth design.
"""

from __future__ import annotations

from ..solve import LayerGraph
from .requant import requant_row
from .ternary_verilog import add3_instance, add3_module


def _lit(value: int) -> str:
    """A signed Verilog literal, sized so that it always holds `value`."""
    width = abs(value).bit_length() + 2
    return f"{width}'sd{value}" if value >= 0 else f"-{width}'sd{-value}"


def _operand(name: str, shift: int) -> str:
    return f"({name} <<< {shift})" if shift else name


def emit_verilog(lg: LayerGraph, module: str, out_width: int, raw_acc: bool = False) -> str:
    """The module `module(clk, en, x, y)`; y is registered, latency lg.latency.

    x and y are packed buses, element j in bits [j*width +: width]; inside, each element is
    a named wire (x__j, y__r), so the netlist reads the same as with a port per element.

    With raw_acc, y is the exact accumulator (out_width must hold it), without bias or
    requantization: the plain matrix-vector product, for comparisons with other solvers.
    y is wired straight from the accumulator's register (latency lg.acc_cycle), or from
    one more register when some row's accumulator is negated or is an input without a
    register (latency lg.acc_cycle + 1, for every row then). A second register in series
    would only lengthen each alignment delay chain into one that Yosys maps to a
    shift-register LUT (SRL16E).
    """
    g = lg.graph
    in_width = lg.layer.in_format.width
    n_in, n_out = lg.layer.linear.in_features, lg.layer.linear.out_features
    decl = [
        "  input wire clk;",
        "  input wire en;",
        f"  input wire [{n_in * in_width - 1}:0] x;",
        f"  output wire [{n_out * out_width - 1}:0] y;",
    ]
    decl += [
        f"  wire signed [{in_width - 1}:0] x__{j} = x[{j * in_width} +: {in_width}];"
        for j in range(n_in)
    ]
    # Raw outputs are wires from the accumulator registers, when every row has one.
    wired = raw_acc and all(a is None or (not a.neg and g.nodes[a.node].registered) for a in lg.acc)
    kind = "wire" if wired else "reg"
    decl += [f"  {kind} signed [{out_width - 1}:0] y__{r};" for r in range(n_out)]
    decl.append(f"  assign y = {{{', '.join(f'y__{r}' for r in reversed(range(n_out)))}}};")
    comb: list[str] = []
    seq: list[str] = []
    names: list[str] = []
    for i, n in enumerate(g.nodes):
        if n.kind == "input":
            names.append(f"x__{n.index}")
            continue
        name = f"n{i}"
        names.append(name)
        if n.kind == "add3":
            cells, expr = add3_instance(i, n, names, f"{module}_add3")
        else:
            cells = []
            a = _operand(names[n.a], n.a_shift)
            expr = (
                a
                if n.kind == "delay"
                else f"{a} {'-' if n.sub else '+'} " + _operand(names[n.b], n.b_shift)
            )
        kind = "reg" if n.registered else "wire"
        decl.append(f"  {kind} signed [{n.width - 1}:0] {name};")
        decl += cells
        (seq if n.registered else comb).append(
            f"      {name} <= {expr};" if n.registered else f"  assign {name} = {expr};"
        )
    for row, acc in enumerate(lg.acc):
        if raw_acc:
            value = "0" if acc is None else _operand(names[acc.node], acc.shift)
            if wired:
                comb.append(f"  assign y__{row} = {value};")
            else:
                seq.append(
                    f"      y__{row} <= {'-' if acc is not None and acc.neg else ''}{value};"
                )
            continue
        rr = requant_row(lg.layer, row, None if acc is None else g.interval(acc))
        if acc is None:
            seq.append(f"      y__{row} <= {_lit(rr.constant_output())};")
            continue
        # t = const ± acc is exact in total_width bits (two's complement wraps consistently).
        # It gets its own register: the add and the saturating compare in one cycle were
        # the longest path of the design (Yosys sta).
        w = rr.total_width
        # s holds the shifted total and is at least as wide as y: y takes its low bits.
        ws = max(w + max(0, -rr.shift), out_width)
        ref = _operand(names[acc.node], acc.shift)
        decl.append(f"  reg signed [{w - 1}:0] t{row};")
        decl.append(f"  wire signed [{ws - 1}:0] s{row};")
        op = "-" if acc.neg else "+"
        seq.append(f"      t{row} <= {_lit(rr.const)} {op} {ref};")
        shift = f"t{row} >>> {rr.shift}" if rr.shift >= 0 else f"t{row} <<< {-rr.shift}"
        comb.append(f"  assign s{row} = {shift};")
        hi, lo = _lit(rr.hi), _lit(rr.lo)
        seq.append(
            f"      y__{row} <= (s{row} > {hi}) ? {hi} : (s{row} < {lo}) ? {lo} : "
            f"s{row}[{out_width - 1}:0];"
        )
    helper = [add3_module(f"{module}_add3")] if g.ternary else []
    return "\n".join(
        [
            *helper,
            f"module {module}(clk, en, x, y);",
            *decl,
            *comb,
            "  always @(posedge clk)",
            "    if (en) begin",
            *seq,
            "    end",
            "endmodule",
            "",
        ]
    )
