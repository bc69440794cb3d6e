"""Graph helpers of the variant builder, on small hand-built ONNX graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mindmirror.export.convert import FP16_KEEP_FP32, op_census, topological_sort
from mindmirror.export.errors import ExportError
from onnx import TensorProto, helper


def _if_model(shuffled: bool) -> onnx.ModelProto:
    """y = If(cond, then: x*2 + c, else: x - c), with c computed in the outer graph."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    then_nodes = [
        helper.make_node("Add", ["doubled", "c"], ["then_out"], name="then_add"),
        helper.make_node("Mul", ["x", "two"], ["doubled"], name="then_mul"),  # out of order
    ]
    then_graph = helper.make_graph(
        then_nodes if shuffled else then_nodes[::-1],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [2])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "c"], ["else_out"], name="else_sub")],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [2])],
    )
    outer = [
        # The If reads `c` only inside its branches: a sort that ignores subgraph reads
        # would leave it first.
        helper.make_node(
            "If", ["cond"], ["y"], name="if", then_branch=then_graph, else_branch=else_graph
        ),
        helper.make_node("Neg", ["x"], ["c"], name="make_c"),
    ]
    graph = helper.make_graph(
        outer if shuffled else outer[::-1], "g", [x, cond], [y], initializer=[two]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_topological_sort_orders_outer_and_subgraph_nodes():
    model = _if_model(shuffled=True)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    topological_sort(model.graph)
    onnx.checker.check_model(model, full_check=True)
    assert [n.name for n in model.graph.node] == ["make_c", "if"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([1.0, 3.0], dtype=np.float32)
    (then_y,) = session.run(None, {"x": x, "cond": np.array([True])})
    (else_y,) = session.run(None, {"x": x, "cond": np.array([False])})
    assert then_y.tolist() == [1.0, 3.0]  # 2x + (-x)
    assert else_y.tolist() == [2.0, 6.0]  # x - (-x)


def test_topological_sort_keeps_a_sorted_graph_unchanged():
    model = _if_model(shuffled=False)
    before = model.SerializeToString()
    topological_sort(model.graph)
    assert model.SerializeToString() == before


def test_topological_sort_names_a_value_nothing_defines():
    graph = helper.make_graph(
        [helper.make_node("Neg", ["ghost"], ["y"], name="neg")],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ExportError, match="'neg' reads ghost"):
        topological_sort(graph)


def test_op_census_counts_subgraph_nodes():
    census = op_census(_if_model(shuffled=False))
    assert census == {"Neg": 1, "If": 1, "Mul": 1, "Add": 1, "Sub": 1}


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("/encoder/block.0/layer.0/layer_norm/Pow", True),
        ("/decoder/block.3/layer.2/DenseReluDense/wo/MatMul", True),
        ("/decoder/block.3/layer.2/Add", True),
        ("/decoder/final_layer_norm/Mul_1", True),
        ("/decoder/block.3/layer.2/DenseReluDense/wi_0/MatMul", False),
        ("/decoder/block.3/layer.0/SelfAttention/q/MatMul", False),
        ("/decoder/block.3/layer.0/SelfAttention/Add_1", False),
        ("/lm_head/MatMul", False),
    ],
)
def test_fp16_keep_list(name, kept):
    assert bool(FP16_KEEP_FP32.search(name)) is kept


def test_fp16_round_trips_are_removed_without_changing_types():
    """fp32 -> fp16 -> fp32 becomes fp32 -> fp32 (no rounding, no overflow); an fp16 cast
    that another node still reads stays."""
    from mindmirror.export.convert import drop_fp16_round_trips, fp16_round_trips

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT16, [2])
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], name="to16", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["x16"], ["x32"], name="to32", to=TensorProto.FLOAT),
        helper.make_node("Add", ["x32", "x32"], ["y"], name="add"),
        helper.make_node("Neg", ["x16"], ["z"], name="fp16_reader"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y, z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert fp16_round_trips(model.graph) == ["to32"]
    assert drop_fp16_round_trips(model.graph) == 1
    assert fp16_round_trips(model.graph) == []
    assert [n.name for n in model.graph.node] == ["to16", "to32", "add", "fp16_reader"]
    assert list(model.graph.node[1].input) == ["x"]
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    big = np.array([70000.0, 1.0001], dtype=np.float32)  # beyond fp16, and below its precision
    y_value, _ = session.run(None, {"x": big})
    assert y_value.tolist() == (big * 2).tolist()

    # Without the fp16 reader, the fp16 cast is dead and goes.
    model.graph.node.remove(model.graph.node[3])
    del model.graph.output[1]
    model.graph.node[1].input[0] = "x16"
    drop_fp16_round_trips(model.graph)
    assert [n.name for n in model.graph.node] == ["to32", "add"]
