"""Applications composed of the library's public APIs: `marlin demo` (demo.py), `marlin ablate` (ablate.py), and
the synthetic world as a probe benchmark they share (worlds.py)."""
