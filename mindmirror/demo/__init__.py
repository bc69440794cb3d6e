"""``mindmirror demo``: the whole pipeline in one command, offline, on a generated task.

    data ─► teach ─► distill ─► evaluate ─► export ─► serve ─► sample requests

No LLM teacher or pretrained T5 can be assumed on a machine with no key, no GPU and no
network, so by default the demo runs on the ``arith`` task (templated arithmetic word problems
that mindmirror generates) with the **simulated** teacher (a program that writes chains of
thought and self-evaluations with known error rates, see ``docs/demo.md``). Every other stage is
the product's own code: the teacher store and runner, ``distill`` (stage 1 self-evaluation with
replay, then stage 2 chains of thought) on a T5 trained from scratch with a tokenizer trained
on the task text, ``evaluate`` on the test split, ``export`` to ONNX (int8, parity-checked on
the validation split) and the HTTP service on 127.0.0.1.

Everything goes into a work directory (``runs/demo``). A stage that finished is reused when
the demo runs again with the same settings, detected from its output: the data files, a
teacher store with nothing missing, a bundle whose checksums verify, an evaluation recorded in
its manifest, an ONNX export in it. ``demo.json`` there records the settings each finished
stage was made with, so changing a setting redoes that stage and the ones after it only.

Modules: :mod:`.settings` (the settings, the work directory, ``demo.json``), :mod:`.stages`
(each stage and its reuse), :mod:`.served` (the service as a subprocess, the sample requests
and their ``curl`` lines), :mod:`.pipeline` (``run_demo``: the stages in order, timed),
:mod:`.report` (what is printed), :mod:`.ablation` (``--ablation``, with its own settings) and
:mod:`.cli` (``register``). No stage of the product imports this package.

Light at import time: every stage imports what it needs when it runs.
"""
