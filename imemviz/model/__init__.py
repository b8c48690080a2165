"""The model engine: a deterministic simulator of KVM private memory.

Pure Python + numpy + attrs; it never imports Qt, starts no threads and
touches no files.  `VM.apply(op)` is the only way to change its state.
"""

from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.result import Result
from imemviz.model.vm import VM

__all__ = ["VM", "ConfigError", "Result", "VMConfig"]
