"""Edits of a .tflite flatbuffer: TFLite layers reading CSR weights, and DENSIFY where a reader needs it.

TensorFlow ships the flatbuffer schema's Python object API
(tensorflow.lite.python.schema_py_generated, read and written through
tensorflow.lite.tools.flatbuffer_utils); these functions use it on the main
subgraph of converter output.

- `builtin_layers(content, layers)`: each named FULLY_CONNECTED layer (found by
  its weights, the Keras kernel transposed) takes its bias through a CAST op,
  which makes the bias a computed tensor, so XNNPACK's delegate leaves the node
  to TFLite's own kernel; with form 'csr' its weights become a CSR tensor,
  which that kernel multiplies in time proportional to the survivors (XNNPACK
  would misread a CSR tensor: the CAST is what keeps it away).
- `densify_sparse_inputs(content)`: a DENSIFY op before every DEQUANTIZE that
  reads a sparse-encoded tensor. TensorFlow 2.21's converter, asked for float16
  and sparse weights, leaves block-sparse float16 weights feeding DEQUANTIZE,
  which reads them as dense: the outputs are wrong (NaN here).
"""

import copy

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

FORMS = ("csr", "dense")
_OPS = schema.BuiltinOperator


def _builtin(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _op_code(model, builtin):
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(graph, template, name, buffer):
    tensor = copy.deepcopy(template)
    tensor.name, tensor.buffer, tensor.sparsity = name, buffer, None
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _new_buffer(model, data):
    buffer = schema.BufferT()
    buffer.data = np.ascontiguousarray(data).view(np.uint8).ravel()
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def _op(model, builtin, inputs, outputs, options_type=None, options=None):
    op = schema.OperatorT()
    op.opcodeIndex = _op_code(model, builtin)
    op.inputs, op.outputs = list(inputs), list(outputs)
    if options is not None:
        op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _index_vector(values):
    vector = schema.Int32VectorT()
    vector.values = [int(v) for v in values]
    return vector


def _csr(matrix):
    """(values, SparsityParametersT) of a 2-D matrix: rows dense, columns CSR."""
    rows = schema.DimensionMetadataT()
    rows.format, rows.denseSize = schema.DimensionType.DENSE, matrix.shape[0]
    columns = schema.DimensionMetadataT()
    columns.format = schema.DimensionType.SPARSE_CSR
    columns.arraySegmentsType = columns.arrayIndicesType = schema.SparseIndexVector.Int32Vector
    columns.arraySegments = _index_vector(np.concatenate([[0], np.cumsum(np.count_nonzero(matrix, 1))]))
    columns.arrayIndices = _index_vector(np.nonzero(matrix)[1])
    sparsity = schema.SparsityParametersT()
    sparsity.traversalOrder, sparsity.blockMap, sparsity.dimMetadata = [0, 1], [], [rows, columns]
    return matrix[matrix != 0].astype(np.float32), sparsity


def _weights(model, graph, op):
    """The float32 weight matrix of a FULLY_CONNECTED op (output axis first), or None."""
    tensor = graph.tensors[op.inputs[1]]
    data = model.buffers[tensor.buffer].data
    if tensor.type != schema.TensorType.FLOAT32 or tensor.sparsity is not None or data is None or not len(data):
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32).reshape(tensor.shape)


def _drop_unused_buffers(model):
    used = {t.buffer for g in model.subgraphs for t in g.tensors}
    for index, buffer in enumerate(model.buffers):
        if index and index not in used:
            buffer.data = None


def builtin_layers(content, layers):
    """`content` with the FULLY_CONNECTED layers of `layers` ({name: (Keras kernel [in, out], form)},
    form 'csr' or 'dense') run by TFLite's own kernel; ValueError naming a kernel in no layer."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    left = dict(layers)
    operators = []
    for op in graph.operators:
        matrix = _weights(model, graph, op) if _builtin(model, op) == _OPS.FULLY_CONNECTED else None
        name = None if matrix is None else next(
            (n for n, (kernel, _) in left.items()
             if kernel.T.shape == matrix.shape and np.array_equal(kernel.T, matrix)), None)
        if name is not None:
            form = left.pop(name)[1]
            if form == "csr":
                weights = graph.tensors[op.inputs[1]]
                values, weights.sparsity = _csr(matrix)
                weights.buffer = _new_buffer(model, values)
            bias = op.inputs[2] if len(op.inputs) > 2 else -1
            if bias < 0:
                bias = _new_tensor(graph, graph.tensors[op.outputs[0]], f"{name}/zero_bias".encode(),
                                   _new_buffer(model, np.zeros(matrix.shape[0], np.float32)))
                graph.tensors[bias].shape, graph.tensors[bias].shapeSignature = np.array([matrix.shape[0]]), None
            computed = _new_tensor(graph, graph.tensors[bias], f"{name}/computed_bias".encode(), 0)
            options = schema.CastOptionsT(schema.TensorType.FLOAT32, schema.TensorType.FLOAT32)
            operators.append(_op(model, _OPS.CAST, [bias], [computed], schema.BuiltinOptions.CastOptions, options))
            op.inputs = [op.inputs[0], op.inputs[1], computed]
        operators.append(op)
    if left:
        raise ValueError(f"no FULLY_CONNECTED layer of the file holds the kernel of {', '.join(sorted(left))}")
    graph.operators = operators
    _drop_unused_buffers(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def densify_sparse_inputs(content):
    """`content` with a DENSIFY op before each DEQUANTIZE that reads a sparse-encoded tensor."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    operators, changed = [], False
    for op in graph.operators:
        source = graph.tensors[op.inputs[0]] if op.inputs is not None and len(op.inputs) else None
        if _builtin(model, op) == _OPS.DEQUANTIZE and source is not None and source.sparsity is not None:
            dense = _new_tensor(graph, source, source.name + b"/densified", 0)
            operators.append(_op(model, _OPS.DENSIFY, [op.inputs[0]], [dense], schema.BuiltinOptions.DensifyOptions,
                                 schema.DensifyOptionsT()))
            op.inputs = [dense]
            changed = True
        operators.append(op)
    if not changed:
        return content
    graph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
