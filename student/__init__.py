"""The contract every mindmirror stage shares: tasks, input formats, data and bundle schemas.

Importing this package must stay cheap and must not import torch: the serving image carries it
without the training stack.
"""
