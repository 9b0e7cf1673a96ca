// Behavioural models of the two 7-series cells that hwgen's three-operand adders
// instantiate (hwgen/rtl/ternary_verilog.py), for simulation only (Verilator, Icarus,
// cocotb). Synthesis must not read this file: Yosys and Vivado map the real primitives.
// Written from UG474 / UG953's descriptions of the cells; the ports are theirs.
`ifndef HWGEN_XILINX_PRIMS
`define HWGEN_XILINX_PRIMS
module LUT6_2 #(parameter [63:0] INIT = 64'h0) (
  output wire O6,
  output wire O5,
  input wire I0, I1, I2, I3, I4, I5
);
  // O6 is INIT at the 6-bit input; O5 the lower half's entry (I5 read as 0).
  assign O6 = INIT[{I5, I4, I3, I2, I1, I0}];
  assign O5 = INIT[{1'b0, I4, I3, I2, I1, I0}];
endmodule

module CARRY4 (
  output wire [3:0] CO,
  output wire [3:0] O,
  input wire CI,
  input wire CYINIT,
  input wire [3:0] DI,
  input wire [3:0] S
);
  // Per bit: carry out = S ? carry in : DI; sum = S ^ carry in.
  wire [4:0] c;
  assign c[0] = CI | CYINIT;
  genvar i;
  generate
    for (i = 0; i < 4; i = i + 1) begin : bits
      assign c[i+1] = S[i] ? c[i] : DI[i];
    end
  endgenerate
  assign CO = c[4:1];
  assign O = S ^ c[3:0];
endmodule
`endif
