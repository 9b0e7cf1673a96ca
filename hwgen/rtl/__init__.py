"""Amaranth components for hwgen IR ops. Knows Amaranth and the IR, nothing of PyTorch."""
