"""Thread-local autograd state: whether the tape records, and which forward-mode levels are hidden."""
from __future__ import annotations

import functools
import math
import threading


class _State(threading.local):
    def __init__(self):
        self.grad_enabled = True
        self.fw_cap = math.inf  # forward-mode levels >= fw_cap are hidden (a JVP rule is running)
        self.next_level = 0


state = _State()


def is_grad_enabled() -> bool:
    """True when operations on tensors that require grad are recorded for backward."""
    return state.grad_enabled


class _GradMode:
    """Context manager and decorator (`@ga.no_grad` or `@ga.no_grad()`) that sets grad mode."""

    enabled = True

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        return self(fn) if callable(fn) else self

    def __init__(self, fn=None):
        pass

    def __enter__(self):
        self._prev = state.grad_enabled
        state.grad_enabled = self.enabled

    def __exit__(self, *exc):
        state.grad_enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper

    def _fresh(self):
        return type(self)()


class no_grad(_GradMode):
    """Disable recording: `with ga.no_grad():` or `@ga.no_grad()`. Forward-mode tangents still flow."""

    enabled = False


class enable_grad(_GradMode):
    """Re-enable recording inside a no_grad region."""

    enabled = True


class set_grad_enabled(_GradMode):
    """Set grad mode to `mode` for a region."""

    def __init__(self, mode: bool):
        self.enabled = bool(mode)

    def _fresh(self):
        return set_grad_enabled(self.enabled)


def new_level() -> int:
    """A fresh forward-mode level; nested jvp calls get distinct levels, so tangents never mix."""
    state.next_level += 1
    return state.next_level
