"""Errors hwgen reports to users: each names the file or tool and the problem."""


class HwgenError(Exception):
    """Base class: the CLI prints these as one clear message, without a traceback."""


class InputError(HwgenError):
    """A user-supplied file or argument is missing, malformed or out of range."""


class DepthError(InputError):
    """No adder graph of a layer fits --max-depth; `shallowest` is the fewest levels built,
    so a caller can name the depth to ask for without reading the message."""

    def __init__(self, message: str, shallowest: int):
        super().__init__(message, shallowest)
        self.shallowest = shallowest

    def __str__(self) -> str:
        return str(self.args[0])


class ToolError(HwgenError):
    """An external tool (simulator, Yosys) is missing or failed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup runs (temp folders, locks, tools)."""
