"""Custom ops (``torch.library.custom_op``) with their fake implementations and autograd
registrations, one file per family, and the guard they all pass through."""
