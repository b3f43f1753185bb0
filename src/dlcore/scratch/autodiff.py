"""A small reverse-mode automatic-differentiation engine on NumPy arrays (chapter 1.1).

`Tensor` holds an ndarray, its gradient `.grad` and the edges to its parents; each
edge carries the parent's vector–Jacobian product (VJP): a function from the output's
gradient to the parent's. `backward()` visits the graph in reverse topological order
and sums what flows in. NumPy broadcasting is undone by `unbroadcast`. Helpers below the
engine: a central-difference gradient, random test expressions, and a matplotlib
drawing of a graph.

Edge cases follow `torch.autograd` in float64: `sigmoid` keeps its tails (no exact 0
where torch has 4e-18), `x ** 0` has gradient 0 also at x = 0, `abs` and `relu` have
gradient 0 at exactly 0, and a float32 input stays float32. Bad arguments raise errors
that name them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Array = np.ndarray
VJP = Callable[[Array], Array]  # output gradient (output's shape) -> parent gradient
Axis = int | tuple[int, ...] | None


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum `grad` back to `shape`, undoing NumPy broadcasting: (*lead, *s) -> shape.

    A broadcast input was *copied* along the new or size-1 axes, so its gradient is the
    *sum* of the gradients of the copies."""
    grad, shape = np.asarray(grad), tuple(shape)
    while grad.ndim > len(shape):  # axes broadcasting added in front
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):  # axes stretched from size 1
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    if grad.shape != shape:
        raise ValueError(
            f"unbroadcast: grad of shape {grad.shape} does not broadcast from shape "
            f"{shape} (an axis differs and is not 1)"
        )
    return grad


class Tensor:
    """An ndarray in a computation graph. data: any shape; grad: same shape, after
    `backward`. Integer or bool data becomes float64; float data keeps its dtype.

    Gradients are overwritten (not accumulated) by each `backward()` call, so there is
    no `zero_grad`."""

    def __init__(
        self,
        data,
        requires_grad: bool = False,
        *,
        op: str = "",
        name: str = "",
        edges: Sequence[tuple[Tensor, VJP]] = (),
    ):
        if isinstance(data, Tensor):
            raise TypeError(
                "Tensor(data=...): data is already a Tensor; pass its .data"
            )
        data = np.asarray(data)
        if not (np.issubdtype(data.dtype, np.floating) or data.dtype.kind in "biu"):
            raise TypeError(
                f"Tensor(data=...): data must be real numbers, got dtype {data.dtype}"
            )
        self.data: Array = (
            data if np.issubdtype(data.dtype, np.floating) else data.astype(np.float64)
        )
        self.edges = tuple(edges)  # (parent, vjp) pairs; empty for a leaf
        self.requires_grad = requires_grad or any(
            p.requires_grad for p, _ in self.edges
        )
        self.grad: Array | None = None
        self.op, self.name = op, name

    __array_ufunc__ = None  # `array * tensor` calls Tensor.__rmul__, not NumPy's loop
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    T = property(lambda self: self.transpose())

    def __repr__(self) -> str:
        return f"Tensor(shape={self.shape}, op={self.op or 'leaf'!r})"

    def _lift(self, other) -> Tensor:
        """Wrap a Python number or array as a constant of our dtype (no gradient)."""
        return (
            other
            if isinstance(other, Tensor)
            else Tensor(np.asarray(other, self.data.dtype))
        )

    # ---- element-wise arithmetic; broadcasting is handled in backward() --------------
    def __add__(self, other) -> Tensor:
        b = self._lift(other)
        return Tensor(
            self.data + b.data, op="add", edges=[(self, lambda g: g), (b, lambda g: g)]
        )

    def __sub__(self, other) -> Tensor:
        b = self._lift(other)
        return Tensor(
            self.data - b.data, op="sub", edges=[(self, lambda g: g), (b, lambda g: -g)]
        )

    def __mul__(self, other) -> Tensor:
        b = self._lift(other)
        return Tensor(
            self.data * b.data,
            op="mul",
            edges=[(self, lambda g: g * b.data), (b, lambda g: g * self.data)],
        )

    def __truediv__(self, other) -> Tensor:
        b = self._lift(other)
        return Tensor(
            self.data / b.data,
            op="div",
            edges=[
                (self, lambda g: g / b.data),
                (b, lambda g: -g * self.data / b.data**2),
            ],
        )

    def __neg__(self) -> Tensor:
        return Tensor(-self.data, op="neg", edges=[(self, lambda g: -g)])

    def __pow__(self, p: float) -> Tensor:
        """x**p for a constant exponent p: d/dx = p x^(p-1), and exactly 0 for p = 0
        (as torch: 0 * 0^(-1) would be nan at x = 0)."""
        if isinstance(p, bool) or not isinstance(
            p, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                "x ** p: the exponent p must be a constant number, got "
                f"{type(p).__name__}"
            )
        p = float(p)  # a Python float keeps x's dtype (a NumPy float64 would promote)

        def vjp(g: Array) -> Array:
            if p == 0:
                return np.zeros_like(g)
            return g * p * self.data ** (p - 1)

        return Tensor(self.data**p, op=f"pow {p:g}", edges=[(self, vjp)])

    __radd__ = __add__
    __rmul__ = __mul__
    __rsub__ = lambda self, other: self._lift(other) - self  # other - self
    __rtruediv__ = lambda self, other: self._lift(other) / self

    def __matmul__(self, other: Tensor) -> Tensor:
        """(*, n, k) @ (*, k, m) -> (*, n, m), batch axes broadcast; both operands have
        ndim >= 2. C = AB gives dA = dC B^T and dB = A^T dC."""
        b = self._lift(other)
        if self.ndim < 2 or b.ndim < 2:
            raise ValueError(
                f"matmul: both operands need ndim >= 2, got shapes {self.shape} and "
                f"{b.shape} (reshape a vector to (n, 1) or (1, n))"
            )
        if self.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: inner sizes differ, {self.shape} @ {b.shape} "
                f"(k = {self.shape[-1]} vs {b.shape[-2]})"
            )
        mt = lambda a: np.swapaxes(a, -1, -2)  # matrix transpose of the last two axes
        return Tensor(
            self.data @ b.data,
            op="matmul",
            edges=[(self, lambda g: g @ mt(b.data)), (b, lambda g: mt(self.data) @ g)],
        )

    # ---- element-wise functions: the VJP is g times the derivative -------------------
    def exp(self) -> Tensor:
        e = np.exp(self.data)
        return Tensor(e, op="exp", edges=[(self, lambda g: g * e)])

    def log(self) -> Tensor:
        return Tensor(
            np.log(self.data), op="log", edges=[(self, lambda g: g / self.data)]
        )

    def tanh(self) -> Tensor:
        t = np.tanh(self.data)
        return Tensor(t, op="tanh", edges=[(self, lambda g: g * (1 - t * t))])

    def abs(self) -> Tensor:
        """|x|; the VJP is g * sign(x), so 0 at exactly x = 0 (torch's choice)."""
        return Tensor(
            np.abs(self.data),
            op="abs",
            edges=[(self, lambda g: g * np.sign(self.data))],
        )

    def relu(self) -> Tensor:
        return Tensor(
            np.maximum(self.data, 0),
            op="relu",
            edges=[(self, lambda g: g * (self.data > 0))],
        )

    def sigmoid(self) -> Tensor:
        """1 / (1 + e^-x), from e = e^-|x| <= 1: never overflows, and the left tail
        keeps its digits (sigmoid(-40) = 4.2e-18, not 0, so its log stays finite)."""
        e = np.exp(-np.abs(self.data))
        s = np.where(self.data >= 0, 1 / (1 + e), e / (1 + e))
        return Tensor(s, op="sigmoid", edges=[(self, lambda g: g * s * (1 - s))])

    # ---- reductions and shape changes ------------------------------------------------
    def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Sum over `axis` (None: all). The VJP copies g back along the summed axes."""
        out = self.data.sum(axis=axis, keepdims=keepdims)
        return Tensor(
            out,
            op="sum" if axis is None else f"sum axis={axis}",
            edges=[(self, lambda g: self._spread(g, axis, keepdims))],
        )

    def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Mean over `axis`: the sum divided by n, so the VJP spreads g / n."""
        out = self.data.mean(axis=axis, keepdims=keepdims)
        n = self.data.size // max(out.size, 1)
        return Tensor(
            out,
            op="mean" if axis is None else f"mean axis={axis}",
            edges=[(self, lambda g: self._spread(g, axis, keepdims) / n)],
        )

    def _spread(self, g: Array, axis: Axis, keepdims: bool) -> Array:
        """Broadcast a reduction's gradient g back to self.shape (size-1 axes put back
        first)."""
        if not keepdims and axis is not None:
            g = np.expand_dims(g, axis)
        return np.broadcast_to(g, self.shape)

    def reshape(self, *shape) -> Tensor:
        return Tensor(
            self.data.reshape(*shape),
            op="reshape",
            edges=[(self, lambda g: g.reshape(self.shape))],
        )

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        """Swap two axes (as `torch.transpose`); swapping them back is the VJP."""
        for name, dim in (("dim0", dim0), ("dim1", dim1)):
            if not -self.ndim <= dim < max(self.ndim, 1) or self.ndim == 0:
                raise ValueError(
                    f"transpose: {name}={dim} is out of range for a tensor of shape "
                    f"{self.shape}"
                )
        return Tensor(
            np.swapaxes(self.data, dim0, dim1),
            op="transpose",
            edges=[(self, lambda g: np.swapaxes(g, dim0, dim1))],
        )

    # ---- reverse mode ----------------------------------------------------------------
    def topological_order(self) -> list[Tensor]:
        """Every node this one depends on, each after all of its parents (depth-first
        search)."""
        order, seen = [], set()

        def visit(node: Tensor) -> None:
            if id(node) not in seen:
                seen.add(id(node))
                for parent, _ in node.edges:
                    visit(parent)
                order.append(node)

        visit(self)
        return order

    def backward(self, grad: Array | None = None) -> None:
        """Fill `.grad` of every node that requires it with d(self)/d(node), contracted
        with `grad` (default: ones, i.e. the gradient of self.sum()). `grad` must have
        self's shape. One pass, children first."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor depends on no tensor with requires_grad=True"
            )
        if grad is not None and np.shape(grad) != self.shape:
            raise ValueError(
                f"backward(grad=...): grad has shape {np.shape(grad)}, the output has "
                f"{self.shape}; they must be equal (no broadcasting)"
            )
        order = [n for n in self.topological_order() if n.requires_grad]
        for node in order:
            node.grad = np.zeros_like(node.data)
        self.grad = (
            np.ones_like(self.data)
            if grad is None
            else np.array(grad, self.data.dtype)  # a copy: the caller's array stays
        )
        for node in reversed(order):  # a node's grad is complete before it is passed on
            for parent, vjp in node.edges:
                if parent.requires_grad:
                    parent.grad += unbroadcast(vjp(node.grad), parent.shape)


# ==== helpers: numerical gradients, random expressions, drawing =======================
def numerical_grad(
    f: Callable[[], float],
    params: Sequence[Array],
    h: float = 1e-6,
    indices: Sequence[Sequence[int]] | None = None,
) -> list[Array]:
    """Central differences (f(θ+h e_i) − f(θ−h e_i)) / 2h for every entry of every array
    in `params` (float, C-contiguous; changed in place and restored); f reads them. With
    `indices`, only those flat entries per array (the rest stay 0). Costs 2 calls of f
    per entry."""
    if not h > 0:
        raise ValueError(f"numerical_grad: the step h must be > 0, got {h}")
    if isinstance(params, np.ndarray):
        raise TypeError(
            "numerical_grad: params must be a list of arrays, not one array"
        )
    if indices is not None and len(indices) != len(params):
        raise ValueError(
            f"numerical_grad: indices has {len(indices)} entries, params {len(params)}"
        )
    grads = []
    for k, p in enumerate(params):
        if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
            raise TypeError(
                f"numerical_grad: params[{k}] must be a float ndarray (it is changed "
                f"in place), got {getattr(p, 'dtype', type(p).__name__)}"
            )
        if not p.flags.c_contiguous:
            raise ValueError(
                f"numerical_grad: params[{k}] must be C-contiguous: it is perturbed "
                "through a flat view (use np.ascontiguousarray and pass that array)"
            )
        chosen = None if indices is None else np.asarray(indices[k], dtype=int)
        if (
            chosen is not None
            and chosen.size
            and not (0 <= chosen.min() and chosen.max() < p.size)
        ):
            raise ValueError(
                f"numerical_grad: indices[{k}] must lie in 0..{p.size - 1} (flat "
                "indices of params[k])"
            )
        g, flat = np.zeros_like(p), p.reshape(-1)  # a view: writing flat[i] changes p
        for i in range(p.size) if chosen is None else chosen:
            old = flat[i]
            flat[i] = old + h
            up = f()
            flat[i] = old - h
            down = f()
            flat[i] = old
            g.reshape(-1)[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


# Shapes that broadcast against (2, 4, 4): random expressions mix them freely.
SHAPES = [(2, 4, 4), (4, 4), (1, 4), (4, 1), (4,), (2, 1, 4), (2, 4, 1), (1, 4, 4), ()]
UNARY = {  # written once; runs on our Tensor and on torch.Tensor alike (same names)
    "neg": lambda a: -a,
    "exp": lambda a: (-(a * a)).exp(),
    "log": lambda a: (a * a + 1.0).log(),
    "tanh": lambda a: a.tanh(),
    "abs": lambda a: a.abs(),
    "relu": lambda a: a.relu(),
    "sigmoid": lambda a: a.sigmoid(),
    "pow": lambda a: (a * a + 1.0) ** -0.5,
    "rsub": lambda a: 1.0 - a,
    "rdiv": lambda a: 2.0 / (a * a + 1.0),
    "reshape": lambda a: a.reshape(-1).reshape(a.shape),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 0.5),
    "matmul": lambda a, b: (a @ b) * 0.5,
}


def random_expression(rng: np.random.Generator, n_inputs: int = 3, n_ops: int = 8):
    """A random composition of the ops above on broadcasting shapes.

    Returns (inputs, f, ops): float64 arrays, a function f(*tensors) that works for our
    Tensor and for torch tensors, and the op names used (for reporting coverage)."""
    if n_inputs < 1 or n_ops < 1:
        raise ValueError(
            "random_expression: n_inputs and n_ops must be >= 1, got "
            f"n_inputs={n_inputs}, n_ops={n_ops}"
        )
    inputs = [rng.normal(size=SHAPES[i]) for i in rng.choice(len(SHAPES), n_inputs)]
    shapes, program = [x.shape for x in inputs], []
    for _ in range(n_ops):
        i = int(
            len(shapes) - 1 - min(rng.geometric(0.4) - 1, len(shapes) - 1)
        )  # favour recent
        j = int(rng.integers(len(shapes)))
        a, b = shapes[i], shapes[j]
        kind = rng.choice(
            ["unary", "binary", "reduce", "transpose"], p=[0.4, 0.4, 0.1, 0.1]
        )
        if kind == "binary":
            name = str(rng.choice(list(BINARY)))
            if name == "matmul" and not (
                len(a) >= 2 and len(b) >= 2 and a[-1] == b[-2]
            ):
                name = "mul"
            out = (
                np.broadcast_shapes(a, b)
                if name != "matmul"
                else np.broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])
            )
            program.append((name, i, j, {}))
        elif kind == "reduce" and len(a) >= 1:
            axis = int(rng.integers(len(a)))
            keep = bool(
                axis > 0 or rng.random() < 0.5
            )  # dropping axis 0 keeps a broadcastable shape
            name = str(rng.choice(["sum", "mean"]))
            program.append((name, i, None, {"axis": axis, "keepdims": keep}))
            out = a[:axis] + ((1,) if keep else ()) + a[axis + 1 :]
        elif kind == "transpose" and len(a) >= 2:
            program.append(("transpose", i, None, {}))
            out = a[:-2] + (a[-1], a[-2])
        else:
            name = str(rng.choice(list(UNARY)))
            program.append((name, i, None, {}))
            out = a
        shapes.append(tuple(out))

    def f(*xs):
        values = list(xs)
        for name, i, j, kw in program:
            a = values[i]
            if name in BINARY:
                values.append(BINARY[name](a, values[j]))
            elif name in ("sum", "mean"):
                values.append(
                    getattr(a, name)(axis=kw["axis"], keepdims=kw["keepdims"])
                )
            elif name == "transpose":
                values.append(a.transpose(-2, -1))
            else:
                values.append(UNARY[name](a))
        return values[-1]

    return inputs, f, [p[0] for p in program]


def graph_layers(root: Tensor) -> dict[int, list[Tensor]]:
    """Nodes grouped by depth: an op sits one past its deepest input; a leaf sits just
    before its first consumer (so constants do not send long arrows across the
    picture)."""
    order = root.topological_order()
    depth: dict[int, int] = {}
    for node in order:
        depth[id(node)] = 1 + max((depth[id(p)] for p, _ in node.edges), default=-1)
    first_use: dict[int, int] = {}  # leaf -> depth of the earliest op that reads it
    for node in order:
        for parent, _ in node.edges:
            if not parent.edges:
                first_use[id(parent)] = min(
                    first_use.get(id(parent), depth[id(node)]), depth[id(node)]
                )
    depth.update({leaf: d - 1 for leaf, d in first_use.items()})
    layers: dict[int, list[Tensor]] = {}
    for node in order:
        layers.setdefault(depth[id(node)], []).append(node)
    return layers


def draw_graph(root: Tensor, ax=None, title: str = "Computational graph"):
    """Draw the graph of `root` as a layered DAG (left to right by depth), matplotlib
    only. Boxes show the op (or a leaf's name) and the shape; arrows point from input to
    output."""
    import matplotlib.pyplot as plt

    layers = graph_layers(root)
    pos = {
        id(n): (d, (len(nodes) - 1) / 2 - k)
        for d, nodes in layers.items()
        for k, n in enumerate(nodes)
    }
    if ax is None:
        height = max(len(v) for v in layers.values())
        _, ax = plt.subplots(figsize=(1.7 * len(layers) + 1, 0.9 * height + 1.2))
    for node in root.topological_order():
        for parent, _ in node.edges:
            ax.annotate(
                "",
                xy=pos[id(node)],
                xytext=pos[id(parent)],
                arrowprops=dict(arrowstyle="->", color="0.5", shrinkA=22, shrinkB=22),
            )
    for node in root.topological_order():
        leaf = not node.edges
        label = f"{node.name or node.op or 'const'}\n{node.shape}"
        colour = ("#cfe3f7" if node.requires_grad else "#eeeeee") if leaf else "#fde3c4"
        ax.text(
            *pos[id(node)],
            label,
            ha="center",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="round", fc=colour, ec="0.3"),
        )
    ys = [y for _, y in pos.values()]
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.set_xticks(range(len(layers)))
    ax.set_xlabel("depth (an op sits one step past its deepest input)")
    ax.set_yticks([])
    ax.set_title(title)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax
