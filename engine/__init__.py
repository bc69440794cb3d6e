"""The decoding engine export and service share: torch-free, one home for how a student decodes.

- :mod:`~mindmirror.engine.ids`: the bundle's ``config.json`` read once (special token ids,
  vocabulary size) and the greedy generation settings PyTorch references are run with;
- :mod:`~mindmirror.engine.decoding`: the request row, the sampler and the one decoding loop
  (greedy or seeded sampling, per-row budgets, cancellation, finished rows leaving, a step
  observer), written against a small step-cache interface;
- :mod:`~mindmirror.engine.onnx`: ONNX Runtime sessions (options, checksum-verified loading) and
  the two cache strategies of that loop: host memory (numpy) and device memory (IO binding);
- :mod:`~mindmirror.engine.vocabulary`: model token ids <-> CTranslate2 token strings.

The service serves with this code and the export's parity check runs it, so
``onnx/parity.json`` certifies the loop that serves. It imports only ``mindmirror.student`` and
numpy at module level; onnxruntime and transformers are imported inside the functions that
need them (the serving image has no transformers, and CTranslate2 is optional).
"""
