"""Ahead-of-time compile check: ``python -m bench.compile --arch 90 --out DIR``.

Compiles every fastgru kernel, at the launch plans the dispatcher picks for a GPU, on a machine
without one, and reports per kernel registers, spills, shared memory and the MMA kind. Nothing
is imported here: the stand-in driver (driver.py) must be installed before any kernel module is.
"""
