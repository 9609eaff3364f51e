"""Light top-level functions for the worker-crash test (spawned processes import only this module)."""
import os


def crash_on_three(a):
    if a == 3:
        os._exit(1)  # simulates a native crash in a worker
    return ("ok", a)


def noop():
    pass


def crashed(a):
    return ("crashed", a)
