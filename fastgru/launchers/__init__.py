"""Launchers: for each kernel, the one function that builds its launch (arguments, grid,
meta-parameters) from an op's tensors, used both to run it and by the compile check."""
