"""Runnable examples (``python -m fastgru.examples.digits``)."""
