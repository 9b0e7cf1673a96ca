"""Weight quantization formats (Q4 blocks first), shared by the compiler and the reports."""
