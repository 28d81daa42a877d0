"""End a ``ci`` process without the interpreter's teardown."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import NoReturn


def quick_exit(code: int) -> NoReturn:
    """Exit with ``code`` once everything is written and closed (files in ``with`` blocks,
    thread pools joined, emulators stopped).

    The teardown frees module by module what the OS frees at once: 0.1 s after
    ``ci pipeline``, seconds after TensorFlow was imported. What exit runs before it still
    runs: TensorFlow's atexit handler deletes the temporary modules AutoGraph wrote.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away
            stream.flush()
    os._exit(code)
