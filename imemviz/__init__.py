"""imemviz: a visualizer and simulator of KVM private memory (guest_memfd, S-EPT)."""

__version__ = "0.1.0"
