"""Build the ONNX variants of a T5 student: fp32 through optimum-onnx, then int8 and fp16-mixed.

optimum-onnx's ``text2text-generation-with-past`` export writes an encoder, a decoder without
past, a decoder with past, and the *merged* decoder (one graph, an ``If`` on
``use_cache_branch`` choosing between the two). ONNX Runtime's quantizer and fp16 converter do
not handle the merged decoder's subgraphs correctly (the fp16 converter inserts the casts of
subgraph nodes into the top-level graph, which makes an invalid model), so the derived variants
are made from the two plain decoders and merged afterwards with optimum's own
``merge_decoders`` -- exactly how optimum builds the fp32 merged decoder, so every variant keeps
the same inputs and outputs (names, element types) as fp32.

Variants:

- ``fp32``: optimum's output as is. CPU and CUDA.
- ``int8``: dynamic quantization of the MatMuls whose B input is a constant weight
  (``MatMulConstBOnly``): int8 weights, activations quantized on the fly. The attention
  products (two activations) stay fp32. CPU only: ``MatMulInteger`` has no CUDA kernel.
- ``fp16-mixed``: fp16 weights and compute, except the layer norms, the feed-forward output
  projection (``wo``) and the residual additions, which stay fp32. T5 activations overflow
  fp16's range (65504) in exactly those places (the reason transformers keeps ``wo`` in fp32),
  so plain fp16 produces inf/NaN on real checkpoints. Inputs and outputs stay fp32 (casts at the
  graph edges) so every variant is called the same way. Meant for CUDA.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.engine.onnx import DECODER_FILE as MERGED_DECODER_FILE
from mindmirror.engine.onnx import ENCODER_FILE
from mindmirror.export.errors import ExportError

if TYPE_CHECKING:
    import onnx
    from transformers import PreTrainedModel

__all__ = [
    "FP16_KEEP_FP32",
    "VARIANTS",
    "VariantSpec",
    "build_variant",
    "check_variant_structure",
    "drop_fp16_round_trips",
    "export_with_optimum",
    "fp16_blocked_nodes",
    "fp16_round_trips",
    "topological_sort",
]

logger = logging.getLogger(__name__)

# The two graphs a variant ships are named by the engine that loads them (MERGED_DECODER_FILE);
# these are optimum's intermediate ones.
_DECODER_FILE = "decoder_model.onnx"
_DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"
# protobuf cannot serialize a message over 2 GiB; past this size weights go to external data.
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000

#: node names kept in fp32 by the fp16-mixed variant: layer norms, the FFN output projection
#: and the residual additions (``/layer.N/Add`` is the ``hidden + sublayer(hidden)`` of each
#: T5 sub-layer in the names torch.onnx gives the modules).
FP16_KEEP_FP32 = re.compile(r"layer_norm|DenseReluDense/wo/|/layer\.\d+/Add$")


@dataclass(frozen=True)
class VariantSpec:
    name: str
    precision: str
    devices: tuple[str, ...]
    description: str


VARIANTS: dict[str, VariantSpec] = {
    "fp32": VariantSpec("fp32", "fp32", ("cpu", "cuda"), "optimum-onnx export, float32"),
    "int8": VariantSpec(
        "int8",
        "int8-weights",
        ("cpu",),
        "dynamic int8 quantization of constant-weight MatMuls (MatMulConstBOnly)",
    ),
    "fp16-mixed": VariantSpec(
        "fp16-mixed",
        "fp16-mixed",
        ("cuda",),
        "fp16 with layer norms, FFN output projection and residual adds kept in fp32",
    ),
}


# ----- optimum export --------------------------------------------------------------------------
def export_with_optimum(model: PreTrainedModel, output: Path, opset: int | None = None) -> int:
    """Export ``model`` with optimum-onnx (``text2text-generation-with-past``) into ``output``.

    Returns the opset used. optimum's own validation is skipped: the parity check that follows
    compares every variant with the PyTorch model on real inputs, greedy decoding included.
    """
    import onnx
    from optimum.exporters.onnx import onnx_export_from_model

    output.mkdir(parents=True, exist_ok=True)
    onnx_export_from_model(
        model,
        output,
        task="text2text-generation-with-past",
        opset=opset,
        do_validation=False,
        device="cpu",
    )
    for name in (ENCODER_FILE, _DECODER_FILE, _DECODER_WITH_PAST_FILE, MERGED_DECODER_FILE):
        if not (output / name).is_file():
            raise ExportError(
                f"optimum-onnx did not write {name} (wrote: "
                f"{', '.join(sorted(p.name for p in output.iterdir()))})"
            )
    graph = onnx.load(str(output / ENCODER_FILE), load_external_data=False)
    return next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))


def _onnx_files(directory: Path, stem: str) -> list[Path]:
    """The model file and any external-data files that belong to it."""
    return sorted(
        p for p in directory.iterdir() if p.name == stem or p.name.startswith(f"{stem}_data")
    )


def copy_fp32(optimum_dir: Path, target: Path) -> None:
    """Place optimum's encoder and merged decoder (with any external data) in ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for stem in (ENCODER_FILE, MERGED_DECODER_FILE):
        for path in _onnx_files(optimum_dir, stem):
            shutil.copy2(path, target / path.name)


# ----- graph utilities -------------------------------------------------------------------------
def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs = []
    for attr in node.attribute:
        if attr.HasField("g"):
            graphs.append(attr.g)
        graphs.extend(attr.graphs)
    return graphs


def _free_names(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph reads but does not define: values it takes from enclosing scopes."""
    defined = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    needed: set[str] = set()
    for node in graph.node:
        needed.update(node.input)
        for sub in _subgraphs(node):
            needed |= _free_names(sub)
        defined.update(node.output)
    return needed - defined


def _node_needs(node: onnx.NodeProto) -> set[str]:
    needs = set(node.input)
    for sub in _subgraphs(node):
        needs |= _free_names(sub)
    needs.discard("")
    return needs


def topological_sort(graph: onnx.GraphProto, outer: Iterable[str] = ()) -> None:
    """Reorder ``graph``'s nodes (and its subgraphs') so every input is defined before use.

    Stable: nodes already in order keep their relative order. Unlike onnxruntime's helper this
    counts the values a subgraph takes from the enclosing scope as inputs of the node that owns
    the subgraph. Raises :class:`ExportError` when the graph reads a value nothing defines.
    """
    available = set(outer) | {i.name for i in graph.initializer} | {i.name for i in graph.input}
    pending = list(graph.node)
    ordered = []
    while pending:
        waiting = []
        for node in pending:
            if _node_needs(node) <= available:
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            missing = sorted(_node_needs(waiting[0]) - available)
            raise ExportError(
                f"invalid ONNX graph {graph.name!r}: node {waiting[0].name!r} reads "
                f"{', '.join(missing[:5])}, which nothing defines"
            )
        pending = waiting
    scope = set(available)
    for node in ordered:
        for sub in _subgraphs(node):
            topological_sort(sub, scope)
    copies = [type(node)() for node in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _all_nodes(sub)


def op_census(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each op type the model holds, subgraphs included."""
    return dict(Counter(node.op_type for node in _all_nodes(model.graph)).most_common())


def fp16_blocked_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes the fp16-mixed variant keeps in fp32 (see :data:`FP16_KEEP_FP32`)."""
    return [node.name for node in _all_nodes(model.graph) if FP16_KEEP_FP32.search(node.name)]


def _initializer_bytes(model: onnx.ModelProto) -> int:
    import math

    from onnx.helper import tensor_dtype_to_np_dtype

    return sum(
        math.prod(tensor.dims) * tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        for tensor in model.graph.initializer
    )


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Save ``model``; weights go to ``<name>_data`` when the file would pass protobuf's 2 GiB."""
    import onnx

    if _initializer_bytes(model) > _EXTERNAL_DATA_THRESHOLD:
        onnx.save(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}_data",
        )
    else:
        onnx.save(model, str(path))


# ----- derived variants ------------------------------------------------------------------------
def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    large = sum(p.stat().st_size for p in _onnx_files(source.parent, source.name))
    # The quantizer logs every tensor it skips, and advises shape-inference pre-processing
    # (useless for MatMulConstBOnly, whose weights have known shapes), on the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
            use_external_data_format=large > _EXTERNAL_DATA_THRESHOLD,
        )
    finally:
        root.setLevel(level)


def _convert_fp16_mixed(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    blocked = fp16_blocked_nodes(model)
    if not blocked:
        raise ExportError(
            f"{source.name}: found no layer-norm / FFN-output / residual nodes to keep in fp32; "
            "the graph's node names are not T5's, so fp16-mixed cannot be made safely"
        )
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
    # The converter stores every tensor as fp16, the outputs of the nodes it keeps in fp32
    # included: between two kept nodes it inserts fp32 -> fp16 -> fp32 casts, which would
    # round (and overflow) the residual stream and the norms' statistics anyway.
    drop_fp16_round_trips(converted.graph)
    # The converter appends its Cast nodes at the end of the graph.
    topological_sort(converted.graph)
    save_model(converted, target)


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def fp16_round_trips(graph: onnx.GraphProto) -> list[str]:
    """Names of Cast-to-float nodes that read a Cast-to-float16: a value rounded through fp16."""
    from onnx import TensorProto

    producer = {out: node for node in graph.node for out in node.output}
    trips = []
    for node in graph.node:
        if node.op_type != "Cast" or _cast_to(node) != TensorProto.FLOAT:
            continue
        parent = producer.get(node.input[0])
        if (
            parent is not None
            and parent.op_type == "Cast"
            and _cast_to(parent) == TensorProto.FLOAT16
        ):
            trips.append(node.name)
    return trips


def drop_fp16_round_trips(graph: onnx.GraphProto) -> int:
    """Make every Cast-to-float that reads a Cast-to-float16 read that cast's source instead,
    and remove the fp16 casts nobody reads any more. Returns how many reads were rewired.

    ``Cast(float)(Cast(float16)(x))`` becomes ``Cast(float)(x)``: the same value without the
    fp16 rounding (an fp32 ``x`` makes it an identity, which ONNX Runtime removes).
    """
    producer = {out: node for node in graph.node for out in node.output}
    trips = set(fp16_round_trips(graph))
    for node in graph.node:
        if node.name in trips:
            node.input[0] = producer[node.input[0]].input[0]
    read = {name for node in graph.node for name in node.input}
    read |= {o.name for o in graph.output}
    unused = [
        node
        for node in graph.node
        if node.op_type == "Cast" and not any(out in read for out in node.output)
    ]
    for node in unused:
        graph.node.remove(node)
    return len(trips)


def build_variant(name: str, optimum_dir: Path, target: Path, work: Path) -> None:
    """Write variant ``name``'s encoder and merged decoder into ``target``.

    ``optimum_dir`` holds optimum's fp32 export; ``work`` is scratch space.
    """
    from optimum.onnx import merge_decoders

    if name == "fp32":
        copy_fp32(optimum_dir, target)
        return
    transform = {"int8": _quantize_int8, "fp16-mixed": _convert_fp16_mixed}.get(name)
    if transform is None:
        raise ExportError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    scratch = work / name
    scratch.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    transform(optimum_dir / ENCODER_FILE, target / ENCODER_FILE)
    for stem in (_DECODER_FILE, _DECODER_WITH_PAST_FILE):
        transform(optimum_dir / stem, scratch / stem)
    # Same call optimum makes for its own merged seq2seq decoder: the decoder without past
    # also returns the cross-attention cache, hence strict=False. Its saver writes external
    # data only when told to, which a merged decoder past protobuf's 2 GiB needs.
    size = sum(
        path.stat().st_size
        for stem in (_DECODER_FILE, _DECODER_WITH_PAST_FILE)
        for path in _onnx_files(scratch, stem)
    )
    previous = os.environ.get("FORCE_ONNX_EXTERNAL_DATA")
    if size > _EXTERNAL_DATA_THRESHOLD:
        os.environ["FORCE_ONNX_EXTERNAL_DATA"] = "1"
    try:
        merge_decoders(
            scratch / _DECODER_FILE,
            scratch / _DECODER_WITH_PAST_FILE,
            save_path=target / MERGED_DECODER_FILE,
            strict=False,
        )
    finally:
        if previous is None:
            os.environ.pop("FORCE_ONNX_EXTERNAL_DATA", None)
        else:
            os.environ["FORCE_ONNX_EXTERNAL_DATA"] = previous
    shutil.rmtree(scratch, ignore_errors=True)


# ----- structural checks -----------------------------------------------------------------------
def _signature(path: Path) -> dict[str, list[tuple[str, int]]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        "inputs": [(v.name, v.type.tensor_type.elem_type) for v in model.graph.input],
        "outputs": [(v.name, v.type.tensor_type.elem_type) for v in model.graph.output],
    }


def check_variant_structure(name: str, directory: Path, fp32_directory: Path) -> dict[str, Any]:
    """Checks that need no inference: the ONNX checker, the same I/O as fp32, the expected ops.

    Raises :class:`ExportError` on the first failure; returns what was checked, for the report.
    """
    import onnx

    report: dict[str, Any] = {"onnx_checker": {}, "io_matches_fp32": True, "ops": {}}
    for stem in (ENCODER_FILE, MERGED_DECODER_FILE):
        path = directory / stem
        if not path.is_file():
            raise ExportError(f"variant {name}: {stem} was not written")
        try:
            # By path, so models with external data are checked too.
            onnx.checker.check_model(str(path), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
            raise ExportError(f"variant {name}: {stem} fails the ONNX checker: {error}") from None
        report["onnx_checker"][stem] = "ok"
        if name != "fp32" and _signature(path) != _signature(fp32_directory / stem):
            raise ExportError(
                f"variant {name}: {stem} does not take and return the same tensors as fp32"
            )
        census = op_census(onnx.load(str(path), load_external_data=False))
        report["ops"][stem] = census
        if name == "int8" and not census.get("MatMulInteger"):
            raise ExportError(f"variant int8: {stem} holds no quantized MatMul")
        if name == "fp16-mixed":
            model = onnx.load(str(path), load_external_data=False)
            graphs = [model.graph, *(g for n in _all_nodes(model.graph) for g in _subgraphs(n))]
            trips = [trip for graph in graphs for trip in fp16_round_trips(graph)]
            report["fp16_round_trips"] = report.get("fp16_round_trips", 0) + len(trips)
            if not census.get("Cast") or trips:
                raise ExportError(
                    f"variant fp16-mixed: {stem} does not keep its fp32 regions in fp32 "
                    f"({len(trips)} values rounded through fp16, e.g. {trips[:2]})"
                )
    return report
