"""Independent float64 references: scipy's adaptive quadrature on numpy densities.

Nothing here imports divjax: the break points handed to `quad` (means, q's
mean, dominance crossings, the centres of q^2 / N_k) are recomputed with numpy.
"""

import numpy as np
from scipy import integrate, stats


def _crossings(w, m, s):
    out = []
    for i in range(len(m)):
        for j in range(i + 1, len(m)):
            a = 0.5 / s[j] ** 2 - 0.5 / s[i] ** 2
            b = m[i] / s[i] ** 2 - m[j] / s[j] ** 2
            c = (np.log(w[i] / s[i]) - 0.5 * (m[i] / s[i]) ** 2) - (
                np.log(w[j] / s[j]) - 0.5 * (m[j] / s[j]) ** 2
            )
            roots = np.roots([a, b, c]) if a != 0 else np.array([-c / b])
            out += [r.real for r in np.atleast_1d(roots) if abs(np.imag(r)) < 1e-12]
    return out


def _pair_centres(m, s, loc, scale):
    """Centres and precisions of the Gaussian-shaped terms N_i N_j / q of p^2 / q."""
    out = []
    for i in range(len(m)):
        for j in range(len(m)):
            lij = 1 / s[i] ** 2 + 1 / s[j] ** 2 - 1 / scale**2
            out.append(((m[i] / s[i] ** 2 + m[j] / s[j] ** 2 - loc / scale**2) / lij, lij))
    return out


def divergence(name, weights, locs, scales, loc, scale):
    """The divergence between the normalized mixture and N(loc, scale^2), by scipy.quad."""
    w = np.asarray(weights, float) / np.sum(weights)
    m, s = np.asarray(locs, float), np.asarray(scales, float)
    if name == "chi2_forward" and scale**2 <= np.max(s) ** 2 / 2:
        return np.inf
    if name == "chi2_reverse" and scale**2 >= 2 * np.max(s) ** 2:
        return np.inf

    def lp(x):
        return np.logaddexp.reduce(np.log(w) + stats.norm.logpdf(x, m, s))

    def lq(x):
        return stats.norm.logpdf(x, loc, scale)

    integrands = {
        "kl_forward": lambda x: np.exp(lp(x)) * (lp(x) - lq(x)),
        "kl_reverse": lambda x: np.exp(lq(x)) * (lq(x) - lp(x)),
        "chi2_forward": lambda x: np.exp(2 * lp(x) - lq(x)),
        "chi2_reverse": lambda x: np.exp(2 * lq(x) - lp(x)),
    }
    f = integrands[name]
    pts = list(m) + [loc] + _crossings(w, m, s)
    lo = min(np.min(m - 40 * s), loc - 40 * scale)
    hi = max(np.max(m + 40 * s), loc + 40 * scale)
    if name == "chi2_reverse":
        lam = 2 / scale**2 - 1 / s**2
        for lk, mk, sk in zip(lam, m, s):
            if lk > 0:
                ck = (2 * loc / scale**2 - mk / sk**2) / lk
                pts.append(ck)
                lo, hi = min(lo, ck - 40 / np.sqrt(lk)), max(hi, ck + 40 / np.sqrt(lk))
    if name == "chi2_forward":
        # p^2 / q is a sum of Gaussian-shaped terms N_i N_j / q whose centres can lie far out.
        for cij, lij in _pair_centres(m, s, loc, scale):
            pts.append(cij)
            lo, hi = min(lo, cij - 40 / np.sqrt(lij)), max(hi, cij + 40 / np.sqrt(lij))
    # Graded points around every centre, so that no narrow peak can sit inside
    # an interval where Gauss-Kronrod samples nothing of it (seen: p = N(0, 0.05^2)
    # against q = N(0, 16^2) once returned chi^2 = -1).
    widths = [(mk, sk) for mk, sk in zip(m, s)] + [(loc, scale)]
    if name == "chi2_forward":
        widths += [(c, 1 / np.sqrt(l_)) for c, l_ in _pair_centres(m, s, loc, scale)]
    pts += [c + k * w_ for c, w_ in widths for k in (-16, -4, -1, 1, 4, 16)]
    pts = [lo] + sorted(x for x in set(pts) if lo < x < hi) + [hi]
    total = 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        total += integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=1000)[0]
    return total - 1.0 if name.startswith("chi2") else total
