"""A JAX function -> an ONNX model, by translating its jaxpr one primitive at a time.

Why this route (README, "Exporting a model"): jax2onnx, the maintained JAX -> ONNX converter,
pins `orbax-checkpoint<0.11.37` in every release up to 0.17.1 (the project needs 0.12.8) and
pulls equinox, dm-pix, netron and huggingface-hub; jax2tf + tf2onnx needs TensorFlow; no
maintained converter reads StableHLO. The project's exported graphs (the ResNet-18 and ViT
students with their preprocessing, MTCNN's P/R/O-Nets) use a few dozen primitives, and
translating the very jaxpr that JAX runs keeps every operation - the uint8 -> [0, 1] scaling,
the inference-mode batch norm, the softmax - in the graph, with nothing re-implemented by
hand. Only `onnx` is needed to write the file (the `export` extra).

Shapes may be symbolic (`jax.export.symbolic_shape`): a symbolic input dimension becomes a
named ONNX dimension (a dynamic batch, P-Net's canvas size), and every shape the graph needs
at run time (Reshape, Expand, Slice bounds) is computed from the inputs' shapes. A primitive
without a translation is an error naming it, never a silently wrong graph.

A broadcast (`broadcast_in_dim`) read only by element-wise operations is left to ONNX's own
numpy-style broadcasting instead of being materialised (`Expand`): PReLU's slope and P-Net's
mask then cost no full-size copy (ONNX Runtime ran MTCNN 2-3x slower with the copies). A
tensor that may still be smaller than its JAX shape is expanded when anything else reads it.
"""

from __future__ import annotations

import ast
import itertools
from typing import Any, Callable, Sequence

import jax
import numpy as np

OPSET = 18
_INLINED = ("pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
            "custom_vjp_call_jaxpr", "remat", "checkpoint")
_IDENTITY = ("stop_gradient", "copy", "copy_p", "optimization_barrier")
_UNARY = {"exp": "Exp", "log": "Log", "neg": "Neg", "abs": "Abs", "sqrt": "Sqrt", "tanh": "Tanh",
          "logistic": "Sigmoid", "erf": "Erf", "sign": "Sign", "floor": "Floor", "ceil": "Ceil",
          "not": "Not"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min",
           "pow": "Pow", "eq": "Equal", "gt": "Greater", "ge": "GreaterOrEqual", "lt": "Less",
           "le": "LessOrEqual", "and": "And", "or": "Or", "xor": "Xor"}
# Element-wise primitives: ONNX broadcasts their operands, so they read broadcasts as they are.
_ELEMENTWISE = (set(_UNARY) | set(_BINARY) | set(_IDENTITY)
                | {"select_n", "ne", "rsqrt", "square", "erfc", "integer_pow", "convert_element_type"})
MAX_FOLDED_SIZE = 1 << 23  # elements: constant results up to this size are computed at export
_REDUCE = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin",
           "reduce_prod": "ReduceProd"}


class ExportError(ValueError):
    """The function uses something this translator does not handle; the message names it."""


def to_onnx(fn: Callable, inputs: Sequence[jax.ShapeDtypeStruct], input_names: Sequence[str],
            output_names: Sequence[str], *, doc: str = "", symbol_names: dict[str, str] | None = None):
    """The `onnx.ModelProto` computing `fn(*inputs)`; `fn`'s parameters must be closed over
    (they become the graph's initializers). `symbol_names` renames symbolic dimensions
    (e.g. {"b": "batch"}) in the model's input and output shapes."""
    import onnx

    closed = jax.make_jaxpr(fn)(*inputs)
    builder = _GraphBuilder(symbol_names or {})
    for var, value in zip(closed.jaxpr.constvars, closed.consts):
        builder.bind(var, builder.constant(np.asarray(value)))
    graph_inputs = []
    for var, name in zip(closed.jaxpr.invars, input_names):
        builder.bind(var, name)
        graph_inputs.append(builder.value_info(name, var.aval))
        for axis, dim in enumerate(var.aval.shape):
            builder.learn_symbol(dim, name, axis)
    builder.run(closed.jaxpr)
    graph_outputs = []
    for var, name in zip(closed.jaxpr.outvars, output_names):
        builder.add("Identity", [builder.read_full(var)], [name])
        graph_outputs.append(builder.value_info(name, var.aval))
    used = {name for node in builder.nodes for name in node.input}
    graph = onnx.helper.make_graph(builder.nodes, "dtda_jax", graph_inputs, graph_outputs,
                                   initializer=[t for t in builder.initializers if t.name in used])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="dtda_jax", doc_string=doc)
    model.ir_version = min(model.ir_version, 10)  # readable by onnxruntime >= 1.20
    onnx.checker.check_model(model)
    return model


class _GraphBuilder:
    def __init__(self, symbol_names: dict[str, str]):
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[Any, str] = {}
        # symbol -> (graph input, axis, a, c): the axis's size is a * symbol + c
        self.symbols: dict[str, tuple[str, int, int, int]] = {}
        self.symbol_names = symbol_names
        self._ids = itertools.count()
        self._dim_cache: dict[str, str] = {}
        self.partial: dict[str, tuple] = {}  # tensors that may be smaller than their JAX shape
        self.values: dict[str, np.ndarray] = {}  # the value of every constant tensor
        self._expanded: dict[str, str] = {}

    # -- names and constants -------------------------------------------------------------------
    def fresh(self, hint: str = "t") -> str:
        return f"{hint}_{next(self._ids)}"

    def bind(self, var, name: str) -> None:
        self.names[var] = name

    def read(self, atom) -> str:
        if isinstance(atom, jax.extend.core.Literal):
            return self.constant(np.asarray(atom.val, dtype=atom.aval.dtype))
        return self.names[atom]

    def read_full(self, atom) -> str:
        """`read`, expanded to the atom's full JAX shape if it is a pending broadcast."""
        name = self.read(atom)
        if name not in self.partial:
            return name
        if name not in self._expanded:
            self._expanded[name] = self.add("Expand", [name, self.shape(self.partial[name])])
        return self._expanded[name]

    def constant(self, value: np.ndarray, hint: str = "const") -> str:
        import onnx

        name = self.fresh(hint)
        value = np.asarray(value)
        self.initializers.append(onnx.numpy_helper.from_array(value, name))
        self.values[name] = value
        return name

    def value(self, atom) -> np.ndarray | None:
        """The atom's value when it is a constant of the graph, else None."""
        if isinstance(atom, jax.extend.core.Literal):
            return np.asarray(atom.val, dtype=atom.aval.dtype)
        return self.values.get(self.names.get(atom))

    def fold(self, eqn) -> bool:
        """Evaluates `eqn` now if every input is a constant and its outputs are small."""
        values = [self.value(a) for a in eqn.invars]
        if eqn.primitive.name in _INLINED or any(v is None for v in values) or not all(
                all(isinstance(d, int) for d in v.aval.shape) and np.prod(v.aval.shape) <= MAX_FOLDED_SIZE
                for v in eqn.outvars):
            return False
        outs = eqn.primitive.bind(*values, **eqn.params)
        for var, out in zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]):
            self.bind(var, self.constant(np.asarray(out)))
        return True

    def add(self, op: str, inputs: Sequence[str], outputs: Sequence[str] | None = None, **attrs) -> str:
        import onnx

        outputs = list(outputs) if outputs else [self.fresh(op.lower())]
        self.nodes.append(onnx.helper.make_node(op, list(inputs), outputs, **attrs))
        return outputs[0]

    def value_info(self, name: str, aval):
        import onnx

        dims = [d if isinstance(d, int) else self.symbol_names.get(str(d), str(d)) for d in aval.shape]
        return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(
            np.dtype(aval.dtype)), dims)

    # -- shapes that may be symbolic -------------------------------------------------------------
    def learn_symbol(self, dim, source: str, axis: int) -> None:
        """Notes where a symbol can be read at run time: an input axis of size a * symbol + c
        (e.g. `batch`, or `32*h` for P-Net's canvas)."""
        if isinstance(dim, (int, np.integer)):
            return
        names = {n.id for n in ast.walk(ast.parse(str(dim), mode="eval")) if isinstance(n, ast.Name)}
        if len(names) != 1:
            return
        (symbol,) = names
        at = lambda value: int(eval(str(dim), {"__builtins__": {}}, {symbol: value}))  # noqa: S307
        c, a = at(0), at(1) - at(0)
        if a > 0 and all(at(v) == a * v + c for v in (2, 7)) and symbol not in self.symbols:
            self.symbols[symbol] = (source, axis, a, c)

    def dim(self, dim) -> str:
        """A 1-element int64 tensor holding `dim` (an int or a symbolic expression)."""
        key = str(dim)
        if key not in self._dim_cache:
            if isinstance(dim, (int, np.integer)):
                self._dim_cache[key] = self.constant(np.array([int(dim)], np.int64), "dim")
            else:
                self._dim_cache[key] = self._evaluate(ast.parse(key, mode="eval").body, key)
        return self._dim_cache[key]

    def _evaluate(self, node, text: str) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return self.dim(node.value)
        if isinstance(node, ast.Name):
            if node.id not in self.symbols:
                raise ExportError(f"symbolic dimension {node.id!r} is not a dimension of any input")
            source, axis, a, c = self.symbols[node.id]
            size = self.add("Shape", [source], start=axis, end=axis + 1)
            if c:
                size = self.add("Sub", [size, self.dim(c)])
            if a != 1:
                size = self.add("Div", [size, self.dim(a)])
            self._dim_cache[node.id] = size
            return size
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return self.add("Neg", [self._evaluate(node.operand, text)])
        if isinstance(node, ast.BinOp):
            ops = {ast.Add: "Add", ast.Sub: "Sub", ast.Mult: "Mul"}
            if type(node.op) in ops:
                return self.add(ops[type(node.op)], [self._evaluate(node.left, text),
                                                     self._evaluate(node.right, text)])
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("floordiv", "max", "min"):
            a, b = (self._evaluate(arg, text) for arg in node.args)
            if node.func.id == "floordiv":  # operands of shape arithmetic are >= 0 here
                return self.add("Div", [a, b])
            return self.add(node.func.id.capitalize(), [a, b])
        raise ExportError(f"cannot express the symbolic dimension {text!r} in ONNX")

    def shape(self, dims: Sequence) -> str:
        """An int64 shape tensor for `dims`, constant when every dimension is."""
        if all(isinstance(d, (int, np.integer)) for d in dims):
            return self.constant(np.array([int(d) for d in dims], np.int64), "shape")
        return self.add("Concat", [self.dim(d) for d in dims], axis=0)

    # -- the jaxpr ----------------------------------------------------------------------------
    def run(self, jaxpr) -> None:
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name in _INLINED:
                inner = next(v for k, v in eqn.params.items() if k in ("jaxpr", "call_jaxpr", "fun_jaxpr"))
                inner_jaxpr = getattr(inner, "jaxpr", inner)
                for var, value in zip(inner_jaxpr.constvars, getattr(inner, "consts", ())):
                    self.bind(var, self.constant(np.asarray(value)))
                for var, atom in zip(inner_jaxpr.invars, eqn.invars):
                    self.bind(var, self.read(atom))  # a pending broadcast stays pending inside
                self.run(inner_jaxpr)
                for var, atom in zip(eqn.outvars, inner_jaxpr.outvars):
                    self.bind(var, self.read(atom))
                continue
            if self.fold(eqn):
                continue
            elementwise = name in _ELEMENTWISE
            inputs = [self.read(a) if elementwise else self.read_full(a) for a in eqn.invars]
            translate = getattr(self, f"_p_{name}", None)
            if translate is not None:
                out = translate(eqn, *inputs)
            elif name in _IDENTITY:
                out = self.add("Identity", inputs[:1])
            elif name in _UNARY:
                out = self.add(_UNARY[name], inputs[:1])
            elif name in _BINARY:
                out = self.add(_BINARY[name], inputs)
            elif name in _REDUCE:
                axes = self.constant(np.array(eqn.params["axes"], np.int64), "axes")
                out = self.add(_REDUCE[name], [inputs[0], axes], keepdims=0)
            else:
                raise ExportError(f"the JAX primitive {name!r} has no ONNX translation (in "
                                  f"dtda_jax/deploy/onnx_graph.py); its params: {dict(eqn.params)}")
            self.bind(eqn.outvars[0], out)
            shape = tuple(eqn.outvars[0].aval.shape)
            if name == "broadcast_in_dim" or (elementwise and shape and all(
                    n in self.partial or (isinstance(a, jax.extend.core.Literal) and not a.aval.shape)
                    for n, a in zip(inputs, eqn.invars))):
                self.partial[out] = shape

    # -- translations needing parameters -------------------------------------------------------
    def _p_convert_element_type(self, eqn, x):
        import onnx

        return self.add("Cast", [x], to=onnx.helper.np_dtype_to_tensor_dtype(np.dtype(eqn.params["new_dtype"])))

    def _p_sub(self, eqn, a, b):
        c = self.values.get(b)
        if c is not None and np.issubdtype(c.dtype, np.floating):
            return self.add("Add", [a, self.constant(-c)])  # x - c is x + (-c) in IEEE arithmetic
        return self.add("Sub", [a, b])

    def _p_max(self, eqn, a, b):
        for x, y in ((a, b), (b, a)):
            c = self.values.get(y)
            if c is not None and not np.any(c) and not np.signbit(c).any():
                return self.add("Relu", [x])
        return self.add("Max", [a, b])

    def _p_ne(self, eqn, a, b):
        return self.add("Not", [self.add("Equal", [a, b])])

    def _p_rsqrt(self, eqn, x):
        return self.add("Reciprocal", [self.add("Sqrt", [x])])

    def _p_square(self, eqn, x):
        return self.add("Mul", [x, x])

    def _p_erfc(self, eqn, x):
        one = self.constant(np.array(1, eqn.invars[0].aval.dtype))
        return self.add("Sub", [one, self.add("Erf", [x])])

    def _p_integer_pow(self, eqn, x):
        exponent = self.constant(np.array(eqn.params["y"], eqn.invars[0].aval.dtype))
        return self.add("Pow", [x, exponent])

    def _p_select_n(self, eqn, which, *cases):
        if len(cases) != 2 or eqn.invars[0].aval.dtype != np.bool_:
            raise ExportError("select_n is translated for a boolean predicate and two cases only")
        return self.add("Where", [which, cases[1], cases[0]])

    def _p_reshape(self, eqn, x):
        if eqn.params.get("dimensions"):
            raise ExportError("reshape with `dimensions` (a transposing reshape) is not translated")
        return self.add("Reshape", [x, self.shape(eqn.params["new_sizes"])])

    def _p_squeeze(self, eqn, x):
        return self.add("Squeeze", [x, self.constant(np.array(eqn.params["dimensions"], np.int64), "axes")])

    def _p_expand_dims(self, eqn, x):
        return self.add("Unsqueeze", [x, self.constant(np.array(eqn.params["dimensions"], np.int64), "axes")])

    def _p_transpose(self, eqn, x):
        return self.add("Transpose", [x], perm=list(eqn.params["permutation"]))

    def _p_broadcast_in_dim(self, eqn, x):
        """Only the new axes (size 1); `run` marks the result a pending broadcast."""
        shape, kept = eqn.params["shape"], eqn.params["broadcast_dimensions"]
        new_axes = [i for i in range(len(shape)) if i not in kept]
        if not new_axes:
            return self.add("Identity", [x])
        if x in self.values:  # a constant stays one, with its new axes
            return self.constant(np.expand_dims(self.values[x], new_axes))
        return self.add("Unsqueeze", [x, self.constant(np.array(new_axes, np.int64), "axes")])

    def _p_concatenate(self, eqn, *xs):
        return self.add("Concat", list(xs), axis=int(eqn.params["dimension"]))

    def _p_slice(self, eqn, x):
        p = eqn.params
        rank = len(p["start_indices"])
        strides = p["strides"] or (1,) * rank
        return self.add("Slice", [x, self.shape(p["start_indices"]), self.shape(p["limit_indices"]),
                                  self.constant(np.arange(rank, dtype=np.int64), "axes"),
                                  self.shape(strides)])

    def _p_pad(self, eqn, x, value):
        config = eqn.params["padding_config"]
        if any(int(interior) for _, _, interior in config) or any(int(lo) < 0 or int(hi) < 0
                                                                  for lo, hi, _ in config):
            raise ExportError("pad with interior or negative padding is not translated")
        pads = self.constant(np.array([int(lo) for lo, _, _ in config] + [int(hi) for _, hi, _ in config],
                                      np.int64), "pads")
        return self.add("Pad", [x, pads, value], mode="constant")

    def _p_dot_general(self, eqn, a, b):
        (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
        ra, rb = (len(v.aval.shape) for v in eqn.invars)
        if not ba and not bb and tuple(ca) == (ra - 1,) and tuple(cb) == (0,) and rb == 2:
            return self.add("MatMul", [a, b])  # (..., K) @ (K, N)
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        la = [next(letters) for _ in range(ra)]
        lb = [None] * rb
        for i, j in itertools.chain(zip(ba, bb), zip(ca, cb)):
            lb[j] = la[i]
        lb = [x or next(letters) for x in lb]
        free_a = [la[i] for i in range(ra) if i not in ba and i not in ca]
        free_b = [lb[j] for j in range(rb) if j not in bb and j not in cb]
        out = [la[i] for i in ba] + free_a + free_b  # lax.dot_general's output order
        equation = f"{''.join(la)},{''.join(lb)}->{''.join(out)}"
        return self.add("Einsum", [a, b], equation=equation)

    def _p_conv_general_dilated(self, eqn, x, kernel):
        p = eqn.params
        dn = p["dimension_numbers"]
        if any(d != 1 for d in (p["lhs_dilation"] or ())):
            raise ExportError("transposed convolutions (lhs_dilation) are not translated")
        lhs, rhs, out = dn.lhs_spec, dn.rhs_spec, dn.out_spec  # (batch, feature, spatial...)
        x = self.add("Transpose", [x], perm=list(lhs))
        if kernel in self.values:
            kernel = self.constant(np.ascontiguousarray(self.values[kernel].transpose(rhs)))
        else:
            kernel = self.add("Transpose", [kernel], perm=list(rhs))
        padding = p["padding"]
        pads = [int(lo) for lo, _ in padding] + [int(hi) for _, hi in padding]
        y = self.add("Conv", [x, kernel], strides=list(p["window_strides"]), pads=pads,
                     dilations=list(p["rhs_dilation"] or (1,) * len(padding)),
                     group=int(p["feature_group_count"]))
        if p["batch_group_count"] != 1:
            raise ExportError("convolutions with batch_group_count are not translated")
        return self.add("Transpose", [y], perm=[int(i) for i in np.argsort(out)])

    def _p_reduce_window_max(self, eqn, x):
        p = eqn.params
        window, strides, padding = p["window_dimensions"], p["window_strides"], p["padding"]
        rank = len(window)
        spatial = [i for i in range(rank) if window[i] != 1 or strides[i] != 1 or padding[i] != (0, 0)]
        if any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"])) or not spatial:
            raise ExportError("reduce_window_max with dilation is not translated")
        # MaxPool pools the trailing axes of (N, C, spatial...): move the others to the front.
        others = [i for i in range(rank) if i not in spatial]
        if len(others) != 2:
            raise ExportError("reduce_window_max is translated for exactly two unpooled axes")
        perm = others + spatial
        y = self.add("MaxPool", [self.add("Transpose", [x], perm=perm)],
                     kernel_shape=[int(window[i]) for i in spatial],
                     strides=[int(strides[i]) for i in spatial],
                     pads=[int(padding[i][0]) for i in spatial] + [int(padding[i][1]) for i in spatial])
        return self.add("Transpose", [y], perm=[int(i) for i in np.argsort(perm)])

    def _p_gather(self, eqn, x, indices):
        """`x[..., k, ...]` with one index along one axis (how jnp indexes a static position)."""
        dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
        shape = eqn.invars[0].aval.shape
        if (len(dn.collapsed_slice_dims) != 1 or tuple(dn.start_index_map) != tuple(dn.collapsed_slice_dims)
                or dn.operand_batching_dims or eqn.invars[1].aval.shape != (1,)):
            raise ExportError(f"gather is translated for one index along one axis only, got {dn}")
        axis = dn.collapsed_slice_dims[0]
        if any(str(s) != str(d) for i, (s, d) in enumerate(zip(sizes, shape)) if i != axis):
            raise ExportError("gather of partial slices is not translated")
        scalar = self.add("Reshape", [indices, self.constant(np.zeros(0, np.int64), "shape")])
        return self.add("Gather", [x, scalar], axis=int(axis))

    def _p_iota(self, eqn):
        p = eqn.params
        values = np.arange(p["shape"][p["dimension"]], dtype=p["dtype"])
        shape = [1] * len(p["shape"])
        shape[p["dimension"]] = -1
        return self.add("Expand", [self.constant(values.reshape(shape)), self.shape(p["shape"])])
