"""``mindmirror export``: add ONNX (and optionally CTranslate2) runtimes to a student bundle.

The flow mirrors CTranslate2's converters: *validate* the bundle (checksums, a T5 model, no
export in the way unless ``--force``), *convert* with optimum-onnx into a hidden staging
directory inside the bundle, derive the quantized / reduced-precision *variants*, *verify* every
variant against the PyTorch model (the parity report), and only then *write*: rename the staged
directories into place and rewrite the manifest's checksums. A failed or killed export leaves
the bundle as it was.

Importing this package is cheap; torch, onnx and onnxruntime are imported where they are used.
"""
