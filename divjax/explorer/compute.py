r"""The explorer's compiled programs: one frame of fitting, the landscape, values at a point.

`advance` is two compiled calls per frame: `run_steps` runs ``num_steps``
steps of `divjax.fitter`'s ``step`` for each active direction (forward and
reverse fitted at once) in one ``fori_loop``; `view` computes everything the
panels draw (a `Frame`). The target, both states, the hyperparameters
(`HYPER`: the step size, its decay, the momentum, the clipping norm, and the
natural-gradient, fixed-scale and Adam switches), the number of steps, the
density grid and the padded optima are traced *arguments*: dragging a mode or
``q``, moving a slider, toggling those switches or changing the speed never
recompiles. Only the `Settings` are static (the divergence kind, the
exact or Monte Carlo, the estimators, ``K`` and the coordinates): each
combination compiles once. Both directions are always computed; which of them
are fitted is a traced mask.

The optimizer (`make_optimizer`, passed to `divjax.fitter`) is
``optax.inject_hyperparams`` around the chain ``hold_scale -> natural_gradient
-> clip_by_global_norm -> SGD with momentum | Adam -> hold_scale``
(`divjax.natural`'s transformations, each switched by a traced flag), so its
hyperparameters are state, overwritten before every step; the step size
decays as ``lr0 / (1 + decay * t)`` with ``t`` the steps taken in this fit.
The clipping bounds the update the optimizer sees: the natural gradient when
that is on.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from divjax import natural, status
from divjax.coordinates import get_parameterization
from divjax.divergences import divergence
from divjax.estimators import surrogate
from divjax.families import Gaussian
from divjax.fit import FitState, fitter, judge
from divjax.optima import Optima

DIRECTIONS = ("forward", "reverse")
KINDS = ("kl", "chi2")
OPTIMIZERS = ("sgd", "adam")
HYPER = (
    "learning_rate",
    "momentum",
    "decay",
    "clip_norm",
    "natural_gradient",
    "fixed_scale",
    "adam",
)
MAX_OPTIMA = 8  # optima are padded to this many rows (NaN rows are never near)
PATH_POINTS = 32  # trajectory points recorded per frame, at most
WINDOW = 100  # steps the iterate average and the status's trend test span


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a compiled `advance` is specialized to (hashable; a change recompiles once).

    Attributes:
      kind: ``"kl"`` or ``"chi2"``; the divergences are ``{kind}_forward`` and ``{kind}_reverse``.
      directions: the fitted directions, a non-empty ordered subset of `DIRECTIONS`.
      exact: exact gradients (True) or the Monte Carlo `estimators`.
      estimators: ``(forward, reverse)`` Monte Carlo estimators (also what the
        weights panel and the rug show under exact gradients).
      num_samples: ``K``.
      parameterization: the coordinates gradient descent runs in.
    """

    kind: str = "kl"
    directions: tuple[str, ...] = DIRECTIONS
    exact: bool = True
    estimators: tuple[str, str] = ("snis", "reinforce")
    num_samples: int = 16
    parameterization: str = "mu_log_sigma"

    def name(self, direction: str) -> str:
        return f"{self.kind}_{direction}"

    @property
    def view(self) -> tuple:
        """What `view` depends on: the kind, the estimators, ``K`` and the coordinates."""
        return (self.kind, self.estimators, self.num_samples, self.parameterization)

    @property
    def compiled(self) -> Settings:
        """These settings with every direction: what the compiled programs are keyed on."""
        return dataclasses.replace(self, directions=DIRECTIONS)

    def estimator(self, direction: str) -> str:
        """The estimator the steps of ``direction`` use (``"exact"`` or its Monte Carlo one)."""
        return "exact" if self.exact else self.estimators[DIRECTIONS.index(direction)]


class Frame(NamedTuple):
    """What one `advance` returns; per-direction leaves have a leading ``(2,)`` axis.

    Attributes:
      states: the two `divjax.fit.FitState` after the steps (not moved where inactive).
      loc, log_scale: ``(2,)`` each direction's current ``q``.
      value: ``(2,)`` the exact divergence of each direction at its own ``q``.
      status: a `divjax.status.FitStatus` with ``(2,)`` leaves (`divjax.fit.judge`).
      aux: a `divjax.SurrogateAux` with ``(2, K)`` leaves: one fresh draw of each
        direction's Monte Carlo estimator at its ``q``; ``contributions`` is a
        ``(2, K, 2)`` array in the chosen coordinates.
      dens_p: ``(X,)`` the normalized target on the grid; ``dens_q`` ``(2, X)``.
      log_w: ``(2, X)`` ``log p~ - log q`` on the grid (doubled for ``chi2_forward``).
      path: ``(2, PATH_POINTS, 2)`` ``(loc, log_scale)`` recorded during the
        steps, valid where ``recorded`` (``(PATH_POINTS,)``).
      grad_norm: ``(2,)`` the last step's gradient norm.
      step, num_blocks: ``(2,)`` the fits' step counts and completed status blocks.
    """

    states: tuple
    loc: jax.Array
    log_scale: jax.Array
    value: jax.Array
    status: status.FitStatus
    aux: tuple
    dens_p: jax.Array
    dens_q: jax.Array
    log_w: jax.Array
    path: jax.Array
    recorded: jax.Array
    grad_norm: jax.Array
    step: jax.Array
    num_blocks: jax.Array


def _switched(transform, on) -> optax.GradientTransformation:
    """``transform`` where the traced flag ``on`` is set, the identity elsewhere."""

    def update(updates, state, params=None):
        new, state = transform.update(updates, state, params)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(on > 0.5, a, b), new, updates), state

    return optax.GradientTransformation(transform.init, update)


def _either(first, second, use_second) -> optax.GradientTransformation:
    """``first`` or ``second`` by a traced flag (both keep their state up to date)."""

    def init(params):
        return first.init(params), second.init(params)

    def update(updates, state, params=None):
        a, sa = first.update(updates, state[0], params)
        b, sb = second.update(updates, state[1], params)
        pick = jax.tree_util.tree_map(lambda x, y: jnp.where(use_second > 0.5, y, x), a, b)
        return pick, (sa, sb)

    return optax.GradientTransformation(init, update)


def make_optimizer(parameterization: str) -> optax.GradientTransformation:
    """The explorer's optimizer in ``parameterization``'s coordinates (see the module)."""
    param = get_parameterization(parameterization)

    def factory(learning_rate, momentum, clip_norm, natural_gradient, fixed_scale, adam):
        sgd = optax.sgd(learning_rate, momentum=momentum)
        parts = [
            _switched(natural.natural_gradient(param), natural_gradient),
            optax.clip_by_global_norm(clip_norm),
            _either(sgd, optax.adam(learning_rate, b1=momentum), adam),
        ]
        if param.scale_index is not None:
            hold = _switched(natural.hold_scale(param), fixed_scale)
            parts = [hold, *parts, hold]
        return optax.chain(*parts)

    return optax.inject_hyperparams(factory)(
        learning_rate=0.05, momentum=0.9, clip_norm=jnp.inf, natural_gradient=0.0,
        fixed_scale=0.0, adam=0.0,
    )  # fmt: skip


def make_fitters(settings: Settings, target) -> tuple:
    """One `divjax.fitter` per direction (inactive ones too: their states are carried)."""
    return tuple(
        fitter(
            target,
            settings.name(d),
            settings.estimator(d),
            num_samples=settings.num_samples,
            optimizer=make_optimizer(settings.parameterization),
            parameterization=settings.parameterization,
            window=WINDOW,
        )
        for d in DIRECTIONS
    )


def init_states(settings: Settings, target, locs, log_scales, steps, key) -> tuple:
    """Fresh `FitState`'s at ``(locs[i], log_scales[i])`` that keep counting from ``steps[i]``."""
    out = []
    for i, f in enumerate(make_fitters(settings, target)):
        q = Gaussian._make((jnp.asarray(locs[i]), jnp.asarray(log_scales[i])))
        state = f.init(q, jax.random.fold_in(key, i))
        out.append(state._replace(step=jnp.asarray(steps[i], jnp.int32)))
    return tuple(out)


def is_inject(s) -> bool:
    """Whether ``s`` is the state of ``optax.inject_hyperparams`` (either of its two kinds)."""
    return isinstance(s, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState))


def set_hyperparams(opt_state, values: dict):
    """``opt_state`` with every injected hyperparameter in ``values`` replaced (dtype kept)."""

    def fix(s):
        if not is_inject(s):
            return s
        new = {
            k: jnp.asarray(values.get(k, v), jnp.result_type(v)) for k, v in s.hyperparams.items()
        }
        return s._replace(hyperparams=new)

    return jax.tree_util.tree_map(fix, opt_state, is_leaf=is_inject)


def decayed(learning_rate, decay, t):
    """The step size of step ``t``: ``lr0 / (1 + decay * t)``."""
    return learning_rate / (1.0 + decay * t)


def _step_key(key, direction_index, step):
    return jax.random.fold_in(jax.random.fold_in(key, direction_index), step)


def _panel(settings, target, q, key, i, param):
    """One draw of direction ``i``'s Monte Carlo estimator at ``q``; contributions in ``param``."""
    d = DIRECTIONS[i]
    loss_fn = surrogate(settings.name(d), settings.estimators[i], target, settings.num_samples)
    _, aux = loss_fn(q, key)
    c = jnp.stack([aux.contributions.loc, aux.contributions.log_scale], -1)  # (K, 2)
    theta = param.from_gaussian(q)
    _, vjp = jax.vjp(param.to_gaussian, theta)
    jac_t = jax.vmap(lambda g: vjp(Gaussian._make((g[0], g[1])))[0])(jnp.eye(2, dtype=c.dtype))
    return aux._replace(contributions=c @ jac_t)  # row k of jac_t: d theta . e_k pulled back


@functools.partial(jax.jit, static_argnames=("settings",))
def run_steps(settings: Settings, target, states, hyper, active, num_steps, key):
    r"""Runs ``num_steps`` steps of every active direction (`divjax.fitter`'s ``step``).

    Args:
      settings: the static `Settings`.
      target: the `divjax.GaussianMixture` (traced).
      states: ``(forward, reverse)`` `FitState`'s from `init_states` for these settings.
      hyper: ``(7,)`` the values of `HYPER` (``clip_norm = inf``: no clipping; the
        switches are 0 or 1).
      active: ``(2,)`` bool, the fitted directions (a direction not fitted keeps its state).
      num_steps: ``()`` int, steps to take.
      key: the session's PRNG key; step ``t`` of direction ``i`` uses
        ``fold_in(fold_in(key, i), t)``.

    Returns:
      ``(states, path, recorded, grad_norm)`` (see `Frame`).
    """
    fitters = make_fitters(settings, target)
    lr, decay = hyper[HYPER.index("learning_rate")], hyper[HYPER.index("decay")]
    n = jnp.maximum(num_steps, 1)
    dtype = hyper.dtype

    def body(t, carry):
        states, path, recorded, grad_norm = carry
        slot = (t * PATH_POINTS) // n
        new_states, norms = [], []
        for i, (f, old) in enumerate(zip(fitters, states)):
            values = {name: hyper[k] for k, name in enumerate(HYPER)}
            values["learning_rate"] = decayed(lr, decay, old.step.astype(dtype))
            state = old._replace(opt_state=set_hyperparams(old.opt_state, values))
            state, info = f.step(state, _step_key(key, i, old.step))
            state = jax.tree_util.tree_map(lambda a, b, i=i: jnp.where(active[i], a, b), state, old)
            q = f.q(state)
            path = path.at[i, slot].set(jnp.stack([q.loc, q.log_scale]).astype(dtype))
            new_states.append(state)
            norms.append(jnp.where(active[i], info.grad_norm.astype(dtype), grad_norm[i]))
        return tuple(new_states), path, recorded.at[slot].set(True), jnp.stack(norms)

    path0 = jnp.zeros((2, PATH_POINTS, 2), dtype)
    carry = (tuple(states), path0, jnp.zeros(PATH_POINTS, bool), jnp.zeros(2, dtype))
    return jax.lax.fori_loop(0, num_steps, body, carry)


def light(state: FitState) -> FitState:
    """``state`` without the optimizer's and the estimator's parts (what `view` reads)."""
    return state._replace(opt_state=(), est_state=())


def view_tree(view_of: tuple, target, states, x, optima, has_optima, key, steps_out=None):
    r"""Everything the panels draw about the fits' current state (`Frame`'s fields).

    Args:
      view_of: `Settings.view`, so changing the optimizer, the natural gradient, the
        fixed scale or exact/Monte Carlo does not recompile this.
      states: `light` states.
      x: ``(X,)`` the grid of the densities.
      optima: an `Optima` with ``(2, MAX_OPTIMA)`` leaves (NaN-padded), per direction.
      has_optima: ``(2,)`` bool; where False the status is judged without optima.
      key: the session's key; the draws shown use ``fold_in(fold_in(key, 7 + i), step)``.
      steps_out: `run_steps`'s ``(path, recorded, grad_norm)``, passed through.
    """
    kind, estimators, num_samples, parameterization = view_of
    settings = Settings(kind=kind, estimators=estimators, num_samples=num_samples)
    param = get_parameterization(parameterization)
    qs = [param.to_gaussian(s.params) for s in states]
    rows = []
    for i, (d, q, state) in enumerate(zip(DIRECTIONS, qs, states)):
        value = divergence(settings.name(d), target, q)
        opt_i = jax.tree_util.tree_map(lambda a, i=i: a[i], optima)
        st = judge(state, target, opt_i, final_value=value)
        st = st._replace(optimum=jnp.where(has_optima[i], st.optimum, status.UNKNOWN))
        aux = _panel(settings, target, q, _step_key(key, 7 + i, state.step), i, param)
        power = 2.0 if settings.name(d) == "chi2_forward" else 1.0
        log_w = power * (target.unnormalized_log_prob(x) - q.log_prob(x))
        rows.append((value, st, aux, jnp.exp(q.log_prob(x)), log_w))
    value, st, aux, dens_q, log_w = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *rows)
    return dict(
        loc=jnp.stack([q.loc for q in qs]),
        log_scale=jnp.stack([q.log_scale for q in qs]),
        value=value,
        status=st,
        aux=aux,
        dens_p=jnp.exp(target.log_prob(x)),
        dens_q=dens_q,
        log_w=log_w,
        step=jnp.stack([s.step for s in states]),
        num_blocks=jnp.stack([s.num_blocks for s in states]),
        **dict(zip(("path", "recorded", "grad_norm"), steps_out or ())),
    )


def _pack(tree) -> tuple[jax.Array, jax.Array]:
    """Every leaf in two flat arrays, floats and integers (two transfers, not thirty)."""
    leaves = jax.tree_util.tree_leaves(tree)
    floats = [a.ravel() for a in leaves if jnp.issubdtype(a.dtype, jnp.floating)]
    ints = [
        a.ravel().astype(jnp.int32) for a in leaves if not jnp.issubdtype(a.dtype, jnp.floating)
    ]
    return jnp.concatenate(floats), jnp.concatenate(ints)


def _unpack(packed, like):
    """The tree ``like`` (of ``jax.ShapeDtypeStruct``) filled from `_pack`'s arrays, in numpy."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    flat = [np.asarray(p) for p in packed]
    at, out = [0, 0], []
    for leaf in leaves:
        k = 0 if jnp.issubdtype(leaf.dtype, jnp.floating) else 1
        n = int(np.prod(leaf.shape))
        out.append(flat[k][at[k] : at[k] + n].reshape(leaf.shape).astype(leaf.dtype))
        at[k] += n
    return jax.tree_util.tree_unflatten(treedef, out)


@functools.partial(jax.jit, static_argnames=("view_of",))
def view(view_of: tuple, target, states, x, optima, has_optima, key, steps_out):
    """`view_tree`, packed (`_pack`)."""
    return _pack(view_tree(view_of, target, states, x, optima, has_optima, key, steps_out))


_SPECS: dict = {}  # (view_of, shapes) -> the unpacked tree's ShapeDtypeStructs


def advance(
    settings: Settings, target, states, hyper, num_steps, x, optima, has_optima, key
) -> Frame:
    """`run_steps` then `view`: the next `Frame` (two compiled calls).

    The fitted directions are traced (``settings.directions`` is not part of the
    compiled programs' static settings): switching one on or off never recompiles.
    """
    active = np.asarray([d in settings.directions for d in DIRECTIONS])
    compiled = settings.compiled
    states, *steps_out = run_steps(compiled, target, states, hyper, active, num_steps, key)
    args = (target, tuple(light(s) for s in states), x, optima, has_optima, key, tuple(steps_out))
    spec_key = (compiled.view, jax.tree_util.tree_structure(args), _shapes(args))
    if spec_key not in _SPECS:
        _SPECS[spec_key] = jax.eval_shape(functools.partial(view_tree, compiled.view), *args)
    return Frame(states=states, **_unpack(view(compiled.view, *args), _SPECS[spec_key]))


def _shapes(tree) -> tuple:
    leaves = jax.tree_util.tree_leaves(tree)
    return tuple((jnp.shape(a), str(getattr(a, "dtype", type(a)))) for a in leaves)


def pad_optima(optima: Optima | None, dtype) -> tuple[Optima, bool]:
    """``optima`` padded with NaN rows to `MAX_OPTIMA` (``(Optima, has_optima)``; numpy)."""
    nan = np.full((MAX_OPTIMA,), np.nan, dtype)
    if optima is None:
        return Optima(Gaussian._make((nan, nan)), nan), False
    n = min(int(optima.value.shape[0]), MAX_OPTIMA)

    def pad(a):
        out = nan.copy()
        out[:n] = np.asarray(a, dtype)[:n]
        return out

    return Optima(
        Gaussian._make((pad(optima.q.loc), pad(optima.q.log_scale))), pad(optima.value)
    ), True


__all__ = [
    "DIRECTIONS",
    "HYPER",
    "KINDS",
    "OPTIMIZERS",
    "FitState",
    "Frame",
    "Settings",
    "advance",
    "decayed",
    "light",
    "run_steps",
    "view",
    "init_states",
    "make_optimizer",
    "pad_optima",
    "set_hyperparams",
]
