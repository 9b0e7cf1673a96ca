"""Errors hwgen reports to users: each names the file or tool and the problem."""


class HwgenError(Exception):
    """Base class: the CLI prints these as one clear message, without a traceback."""


class InputError(HwgenError):
    """A user-supplied file or argument is missing, malformed or out of range."""


class ToolError(HwgenError):
    """An external tool (simulator, Yosys) is missing or failed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup runs (temp folders, locks, tools)."""
