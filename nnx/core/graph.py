"""Graph: a model built from symbolic inputs and module calls, in the spirit of Keras' functional
API.

Build it symbolically: ``nnx.Input`` names an input, calling a module on symbolic values records
a node, and ``Graph(inputs, outputs)`` collects the nodes the outputs depend on::

    a, b = nnx.Input("a"), nnx.Input("b")
    h = nnx.Parallel(enc_a, enc_b)(a, b)
    model = nnx.Graph([a, b], {"logits": head(h), "code": h})

The graph keeps a plain description (input names; nodes as ``(name, module, input refs)`` in
topological order; outputs as refs), which is also its constructor's second form, so a graph
can be rebuilt from plain values and modules. A ref is an input or node name, or
``"node:i"`` for element ``i`` of a node that returns a tuple.

``forward`` evaluates the nodes in order. ``backward`` runs them in reverse topological order,
each with the module's own backward, and sums the gradients where a value feeds several nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..backend import namespace
from .calls import call_backward, capture_call_state, restore_call_state, restore_final_state
from .module import Module, Symbolic, reused_positions


class Value(Symbolic):
    """A symbolic value: a graph input, a module call's output or one element of it."""

    __slots__ = ("call", "index", "input_name")

    def __init__(self, call: _Call | None = None, index: int | None = None, input_name: str = ""):
        self.call = call
        self.index = index
        self.input_name = input_name

    def __getitem__(self, index: int) -> Value:
        """Element ``index`` of a module's tuple output (``h[0]``)."""
        if self.call is None or self.index is not None:
            raise TypeError("only the output of a module call can be indexed")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise TypeError(f"output index must be a non-negative integer, got {index!r}")
        return Value(self.call, index)

    def record_call(self, module: Module, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Value:
        return symbolic_call(module, inputs, kwargs)

    def __iter__(self):
        raise TypeError(
            "a symbolic value cannot be unpacked (its length is unknown before the graph "
            "runs): index it instead, a, b = h[0], h[1]"
        )

    def __repr__(self) -> str:
        if self.call is None:
            return f"Input({self.input_name!r})"
        suffix = "" if self.index is None else f"[{self.index}]"
        return f"<{type(self.call.module).__name__} output{suffix}>"


def Input(name: str) -> Value:  # noqa: N802 (a factory that reads like the Keras class)
    """A named symbolic input of a :class:`Graph`."""
    _check_name(name, "Input")
    return Value(input_name=name)


class _Call:
    __slots__ = ("module", "inputs", "name")

    def __init__(self, module: Module, inputs: tuple[Value, ...], name: str | None):
        self.module = module
        self.inputs = inputs
        self.name = name


def symbolic_call(module: Module, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Value:
    """``module(*values)`` on symbolic values: record a node (``name=`` names it)."""
    name = kwargs.pop("name", None)
    if kwargs:
        raise TypeError(f"a symbolic call takes only name=, got {sorted(kwargs)}")
    for i, v in enumerate(inputs):
        if not isinstance(v, Value):
            raise TypeError(
                f"{type(module).__name__}: argument {i} is a {type(v).__name__}; in a graph every "
                "argument must be a symbolic value (nnx.Input or a module's output)"
            )
    if name is not None:
        _check_name(name, "node")
    return Value(_Call(module, tuple(inputs), name))


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "." in name or ":" in name or name[0] == "_":
        raise ValueError(
            f"Graph: {what} name must be a non-empty string without '.' or ':' that does not "
            f"start with '_', got {name!r}"
        )
    return name


def _split(ref: str) -> tuple[str, int | None]:
    if ":" in ref:
        base, index = ref.rsplit(":", 1)
        return base, int(index)
    return ref, None


class Graph(Module):
    """A model whose modules form a directed acyclic graph (skip connections, several inputs
    or outputs, shared modules).

    Args:
        inputs: a symbolic input (``nnx.Input("x")``) or a list of them; or, in the plain form,
            a list of input names.
        outputs: a symbolic value, a list of them (``forward`` returns a tuple) or a dict
            ``name -> value`` (``forward`` returns a dict); in the plain form the same with refs.
        nodes: only for the plain form: ``[(name, module, [ref, ...]), ...]`` in topological
            order.

    ``forward`` takes the inputs positionally, in the order of ``inputs``, or by name as
    keywords. ``backward(grad_out, need_input_grad=False)`` takes gradients in the form of the
    outputs (``None`` for an output that no loss uses) and, when ``need_input_grad``, returns
    the input gradients as a tuple in input order (a single array for one input), or a dict when
    ``forward`` was called with keywords. Node names become attribute names, so parameters
    are named ``"<node>.weight"``.

    >>> import numpy as np, nnx
    >>> x = nnx.Input("x")
    >>> h = nnx.Tanh()(nnx.Linear(3, 3, rng=0)(x, name="hidden"))
    >>> model = nnx.Graph(x, nnx.Linear(3, 2, rng=1)(h))
    >>> model(np.ones((4, 3), dtype=np.float32)).shape
    (4, 2)
    >>> [name for name, _ in model.named_parameters()]
    ['hidden.weight', 'hidden.bias', 'linear_0.weight', 'linear_0.bias']
    """

    def __init__(self, inputs: Any, outputs: Any, nodes: Sequence[Any] | None = None):
        if nodes is None:
            inputs, nodes, outputs = _trace(inputs, outputs)
        self.inputs, self.nodes, self.outputs = _validate(inputs, nodes, outputs)
        self._modules_by_node = tuple(module for _, module, _ in self.nodes)
        for name, module, _ in self.nodes:
            setattr(self, name, module)
        self._reused = reused_positions(self._modules_by_node, "Graph")
        self._values: dict[str, Any] = {}
        self._states: list[Any] | None = None
        self._keywords = False

    def extra_repr(self) -> str:
        return f"inputs={list(self.inputs)}"

    def get_config(self) -> dict[str, Any]:
        """The plain constructor arguments (what ``nnx.save_model`` stores):
        ``Graph(**graph.get_config())`` builds the same architecture."""
        outputs = self.outputs
        return {
            "inputs": list(self.inputs),
            "outputs": dict(outputs)
            if isinstance(outputs, dict)
            else outputs
            if isinstance(outputs, str)
            else list(outputs),
            "nodes": [[name, module, list(refs)] for name, module, refs in self.nodes],
        }

    def __repr__(self) -> str:
        lines = [f"Graph(inputs={list(self.inputs)}, outputs={self.outputs!r})"]
        for name, module, refs in self.nodes:
            body = repr(module).replace("\n", "\n    ")
            lines.append(f"  {name} = {body}({', '.join(refs)})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            if args:
                raise TypeError("Graph: give the inputs either positionally or by name, not both")
            if set(kwargs) != set(self.inputs):
                raise TypeError(f"Graph: expected inputs {list(self.inputs)}, got {sorted(kwargs)}")
            values = dict(kwargs)
        else:
            if len(args) != len(self.inputs):
                raise TypeError(
                    f"Graph: expected {len(self.inputs)} inputs {list(self.inputs)}, "
                    f"got {len(args)}"
                )
            values = dict(zip(self.inputs, args, strict=True))
        self._keywords = bool(kwargs)
        reused = self._reused
        states: list[Any] | None = [None] * len(self.nodes) if reused else None
        for i, (name, module, refs) in enumerate(self.nodes):
            values[name] = module.forward(*[self._lookup(values, r) for r in refs])
            if states is not None and i in reused:
                states[i] = capture_call_state(module)
        self._values = values
        self._states = states
        return self._format(lambda ref: self._lookup(values, ref))

    @staticmethod
    def _lookup(values: dict[str, Any], ref: str) -> Any:
        base, index = _split(ref)
        value = values[base]
        if index is None:
            return value
        if not isinstance(value, tuple) or index >= len(value):
            raise ValueError(
                f"Graph: ref {ref!r} takes element {index} of {base!r}, which is "
                + (f"a tuple of {len(value)}" if isinstance(value, tuple) else "not a tuple")
            )
        return value[index]

    def _format(self, get: Any) -> Any:
        if isinstance(self.outputs, str):
            return get(self.outputs)
        if isinstance(self.outputs, dict):
            return {k: get(ref) for k, ref in self.outputs.items()}
        return tuple(get(ref) for ref in self.outputs)

    def _output_pairs(self, grad_out: Any) -> list[tuple[str, Any]]:
        outputs = self.outputs
        if isinstance(outputs, str):
            return [(outputs, grad_out)]
        if isinstance(outputs, dict):
            if not isinstance(grad_out, Mapping) or set(grad_out) - set(outputs):
                raise ValueError(
                    f"Graph: backward needs a dict of gradients with keys among "
                    f"{list(outputs)}, got {type(grad_out).__name__}"
                )
            return [(outputs[k], grad_out.get(k)) for k in outputs]
        if not isinstance(grad_out, (tuple, list)) or len(grad_out) != len(outputs):
            raise ValueError(
                f"Graph: backward needs a tuple of {len(outputs)} gradients, one per output, "
                f"got {type(grad_out).__name__}"
            )
        return list(zip(outputs, grad_out, strict=True))

    # ------------------------------------------------------------------ backward
    def backward(self, grad_out: Any, need_input_grad: bool = False) -> Any:
        """Every node's backward in reverse topological order; gradients of a value used by
        several nodes (or outputs) are summed. Returns the input gradients only when
        ``need_input_grad``."""
        values, states = self._values, self._states
        if not values:
            raise ValueError("Graph: backward called before forward")
        grads: dict[str, Any] = {}

        def add(ref: str, g: Any) -> None:
            if g is None:
                return
            base, index = _split(ref)
            if index is None:
                old = grads.get(base)
                if old is None:
                    grads[base] = g
                elif isinstance(old, tuple):
                    grads[base] = tuple(a + b for a, b in zip(old, g, strict=True))
                else:
                    grads[base] = old + g
                return
            parts = grads.get(base)
            if parts is None:
                parts = grads[base] = [None] * len(values[base])
            elif isinstance(parts, tuple):  # the whole tuple was used too
                parts = grads[base] = list(parts)
            parts[index] = g if parts[index] is None else parts[index] + g

        for ref, g in self._output_pairs(grad_out):
            add(ref, g)
        inputs = set(self.inputs)
        for i in range(len(self.nodes) - 1, -1, -1):
            name, module, refs = self.nodes[i]
            g = grads.pop(name, None)
            if g is None:
                continue  # nothing downstream of this node reaches a used output
            if isinstance(g, list):  # unused elements of a tuple output get zero gradients
                out = values[name]
                g = tuple(
                    namespace(o).zeros_like(o) if part is None else part
                    for o, part in zip(out, g, strict=True)
                )
            need = need_input_grad or any(_split(r)[0] not in inputs for r in refs)
            if states is not None and states[i] is not None:
                restore_call_state(states[i])
            g_in = call_backward(module, g, need)
            if not need:
                continue
            parts = (g_in,) if len(refs) == 1 else tuple(g_in)
            for ref, part in zip(refs, parts, strict=True):
                if need_input_grad or _split(ref)[0] not in inputs:
                    add(ref, part)
        if states is not None:
            restore_final_state(states)
        if not need_input_grad:
            return None
        result = []
        for name in self.inputs:
            g = grads.get(name)
            if g is None:  # an input no output depends on
                x = values[name]
                g = namespace(x).zeros_like(x)
            result.append(g)
        if self._keywords:
            return dict(zip(self.inputs, result, strict=True))
        return result[0] if len(result) == 1 else tuple(result)


# ---------------------------------------------------------------------- building
def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _trace(inputs: Any, outputs: Any) -> tuple[list[str], list[Any], Any]:
    """Symbolic inputs and outputs -> (input names, nodes in topological order, output refs)."""
    symbols = _as_list(inputs)
    for s in symbols:
        if not isinstance(s, Value) or s.call is not None:
            raise TypeError(
                f"Graph: inputs must be nnx.Input values (or, with nodes=, names), got {s!r}"
            )
    input_names = [s.input_name for s in symbols]
    order: list[_Call] = []
    seen: set[int] = set()
    names: dict[int, str] = {}
    counts: dict[str, int] = {}
    taken = set(input_names)

    def visit(value: Any, path: str) -> None:
        if not isinstance(value, Value):
            raise TypeError(
                f"Graph: output {path} is a {type(value).__name__}, not a symbolic value"
            )
        if value.call is None:
            if value.input_name not in input_names:
                raise ValueError(
                    f"Graph: an output depends on Input({value.input_name!r}), which is not "
                    f"among the inputs {input_names}"
                )
            return
        stack = [(value.call, False)]
        while stack:  # iterative post-order: deep graphs need no recursion
            call, expanded = stack.pop()
            if id(call) in seen:
                continue
            if expanded:
                seen.add(id(call))
                order.append(call)
                continue
            stack.append((call, True))
            for v in reversed(call.inputs):
                if v.call is None:
                    if v.input_name not in input_names:
                        raise ValueError(
                            f"Graph: an output depends on Input({v.input_name!r}), which is not "
                            f"among the inputs {input_names}"
                        )
                elif id(v.call) not in seen:
                    stack.append((v.call, False))

    def ref(value: Value) -> str:
        if value.call is None:
            return value.input_name
        base = names[id(value.call)]
        return base if value.index is None else f"{base}:{value.index}"

    if isinstance(outputs, Mapping):
        for k, v in outputs.items():
            visit(v, repr(k))
    else:
        for i, v in enumerate(_as_list(outputs)):
            visit(v, str(i))
    for call in order:
        name = call.name
        if name is None:
            stem = type(call.module).__name__.lower()
            while True:
                name = f"{stem}_{counts.get(stem, 0)}"
                counts[stem] = counts.get(stem, 0) + 1
                if name not in taken:
                    break
        elif name in taken:
            raise ValueError(f"Graph: the name {name!r} is used twice")
        taken.add(name)
        names[id(call)] = name
    nodes = [(names[id(c)], c.module, [ref(v) for v in c.inputs]) for c in order]
    if isinstance(outputs, Mapping):
        out_refs: Any = {str(k): ref(v) for k, v in outputs.items()}
    elif isinstance(outputs, (list, tuple)):
        out_refs = [ref(v) for v in outputs]
    else:
        out_refs = ref(outputs)
    return input_names, nodes, out_refs


_RESERVED = {"inputs", "nodes", "outputs", "training"}


def _validate(inputs: Any, nodes: Any, outputs: Any) -> tuple[tuple[str, ...], tuple, Any]:
    """Check the plain description: names, refs to earlier values, modules."""
    if isinstance(inputs, str):
        inputs = [inputs]
    input_names = tuple(_check_name(n, "input") for n in inputs)
    if not input_names:
        raise ValueError("Graph: give at least one input")
    known = set()
    for n in input_names:
        if n in known:
            raise ValueError(f"Graph: the name {n!r} is used twice")
        known.add(n)
    plain_nodes = []
    for entry in nodes:
        try:
            name, module, refs = entry
        except (TypeError, ValueError):
            raise ValueError(
                f"Graph: a node must be (name, module, [refs]), got {entry!r}"
            ) from None
        _check_name(name, "node")
        if name in known:
            raise ValueError(f"Graph: the name {name!r} is used twice")
        if name in _RESERVED or hasattr(Module, name):
            raise ValueError(f"Graph: {name!r} cannot name a node (it is a Graph attribute)")
        if not isinstance(module, Module):
            raise TypeError(
                f"Graph: node {name!r} must hold an nnx.Module, got {type(module).__name__}"
            )
        refs = (refs,) if isinstance(refs, str) else tuple(refs)
        if not refs:
            raise ValueError(f"Graph: node {name!r} has no inputs")
        for r in refs:
            if not isinstance(r, str) or _split(r)[0] not in known:
                raise ValueError(
                    f"Graph: node {name!r} refers to {r!r}, which is not an input or an earlier "
                    "node (nodes must be in topological order)"
                )
        known.add(name)
        plain_nodes.append((name, module, refs))

    def check_ref(r: Any) -> str:
        if not isinstance(r, str) or _split(r)[0] not in known:
            raise ValueError(f"Graph: output {r!r} is not an input or a node")
        return r

    if isinstance(outputs, str):
        out: Any = check_ref(outputs)
    elif isinstance(outputs, Mapping):
        out = {str(k): check_ref(r) for k, r in outputs.items()}
    else:
        out = tuple(check_ref(r) for r in outputs)
    if not out and not isinstance(out, str):
        raise ValueError("Graph: give at least one output")
    return input_names, tuple(plain_nodes), out
