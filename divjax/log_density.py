r"""`LogDensity`: a target given by its log density (per point by default, or batched).

Distribution objects with ``log_prob`` and ``event_shape`` (numpyro, TFP on
JAX, distrax) become a normalized, batched `LogDensity` through
`distribution_density`. `divjax.targets.as_target` wraps everything at the
boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp


class LogDensity:
    r"""A target given by a log density ``fn``: unnormalized unless ``normalized=True``.

    Args:
      fn: ``log p~``. By default a function of ONE point ``x`` of shape
        ``event_shape`` returning a scalar (the blackjax / numpyro convention);
        it is vectorized with ``vmap``. With ``batched=True`` it takes
        ``(N, *event_shape)`` and returns ``(N,)``. It must be differentiable
        for the pathwise estimators.
      event_shape: ``()`` or ``(d,)``; ``None`` (the default) takes it from
        ``q`` when the target is paired with one.
      batched: ``fn`` takes a batch (see above).
      normalized: ``fn`` is the normalized ``log p``; needed by the estimators
        of divergences linear in ``p`` (Amari, Hellinger, Jensen-Shannon).

    A `LogDensity` has no exact divergences and cannot be sampled.
    """

    def __init__(
        self,
        fn: Callable[[jax.Array], jax.Array],
        event_shape: tuple[int, ...] | None = None,
        *,
        batched: bool = False,
        normalized: bool = False,
    ):
        if not callable(fn):
            raise ValueError(f"fn must be a callable log density, got {fn!r}")
        if event_shape is not None:
            event_shape = tuple(int(n) for n in event_shape)
            if len(event_shape) > 1:
                raise ValueError(f"event_shape must be () or (d,), got {event_shape}")
        self.fn, self.event_shape = fn, event_shape
        self.batched, self.normalized = bool(batched), bool(normalized)

    def _key(self):
        return (self.fn, self.event_shape, self.batched, self.normalized)

    def __eq__(self, other):
        return isinstance(other, LogDensity) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        kind = "batched" if self.batched else "per-point"
        return f"LogDensity({getattr(self.fn, '__name__', self.fn)!r}, {self.event_shape}, {kind})"

    @property
    def dim(self) -> int:
        if self.event_shape is None:
            raise ValueError("this LogDensity's event_shape is not known yet (pair it with a q)")
        return 1 if self.event_shape == () else self.event_shape[0]

    def bind(self, event_shape: tuple[int, ...], dtype=None) -> LogDensity:
        """This density with ``event_shape`` fixed, its output shape checked (ValueError)."""
        event_shape = tuple(event_shape)
        if self.event_shape is not None and self.event_shape != event_shape:
            raise ValueError(
                f"the target's event_shape {self.event_shape} does not match q's {event_shape}"
            )
        bound = LogDensity(self.fn, event_shape, batched=self.batched, normalized=self.normalized)
        bound.check(dtype or jnp.result_type(float))
        return bound

    def check(self, dtype) -> None:
        """Traces ``fn`` on abstract input and checks its output shape (ValueError)."""
        n = 3
        if self.batched:
            arg, want = (n,) + self.event_shape, (n,)
            how = f"a batch of shape {arg}"
        else:
            arg, want = self.event_shape, ()
            how = f"one point of shape {arg}"
        try:
            out = jax.eval_shape(self.fn, jax.ShapeDtypeStruct(arg, dtype))
        except Exception as err:  # the user's function failed on the documented input
            hint = "" if self.batched else " (declare batched=True for a function of a batch)"
            raise ValueError(f"the target log density failed on {how}: {err}{hint}") from err
        shape = getattr(out, "shape", None)
        if shape != want:
            hint = (
                "; a function of one point must return a scalar (declare batched=True if it "
                "takes a batch)"
                if not self.batched
                else "; a batched function must return one value per point"
            )
            raise ValueError(
                f"the target log density returned shape {shape} for {how}; expected {want}{hint}"
            )

    def unnormalized_log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        """``fn`` over ``x`` of shape ``batch + event_shape``, shape ``batch``."""
        if self.event_shape is None:
            raise ValueError("this LogDensity's event_shape is not known yet (pair it with a q)")
        x = jnp.asarray(x)
        batch = x.shape[: x.ndim - len(self.event_shape)]
        flat = x.reshape((math.prod(batch),) + self.event_shape)
        out = self.fn(flat) if self.batched else jax.vmap(self.fn)(flat)
        return jnp.reshape(out, batch)

    def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        """The normalized ``log p`` (only for ``normalized=True``; ValueError otherwise)."""
        if not self.normalized:
            raise ValueError(
                "this LogDensity is unnormalized: log_prob is unknown (declare normalized=True "
                "if fn is the normalized log density)"
            )
        return self.unnormalized_log_prob(x)

    def sample(self, key=None, sample_shape=(), *, seed=None):
        raise ValueError("a LogDensity target cannot be sampled; only its log density is known")


jax.tree_util.register_pytree_node(
    LogDensity,
    lambda t: ((), t._key()),
    lambda k, _: LogDensity(k[0], k[1], batched=k[2], normalized=k[3]),
)


def is_distribution(obj) -> bool:
    return callable(getattr(obj, "log_prob", None)) and hasattr(obj, "event_shape")


def _shape(shape, what: str) -> tuple[int, ...]:
    """A plain tuple from a tuple or TFP's ``TensorShape`` (ValueError if not fully known)."""
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the distribution's {what} {shape} is not fully known") from err


def distribution_density(obj) -> LogDensity:
    """A numpyro / TFP / distrax distribution as a normalized, batched `LogDensity`."""
    batch = _shape(getattr(obj, "batch_shape", ()), "batch_shape")
    event = _shape(obj.event_shape, "event_shape")
    if batch != ():
        raise ValueError(
            f"a target must have batch_shape (), got {batch} with event_shape {event}: its "
            "log_prob gives one value per batch entry; to treat the batch as the event wrap it "
            "in Independent (numpyro: d.to_event(1))"
        )
    if len(event) > 1:
        raise ValueError(f"targets live on R or R^d; got event_shape {event}")
    return LogDensity(obj.log_prob, event, batched=True, normalized=True)


__all__ = ["LogDensity", "distribution_density", "is_distribution"]
