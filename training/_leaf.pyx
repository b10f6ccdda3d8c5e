# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The per-record arithmetic of `training.hoeffding._Leaf` compiled: the same IEEE operations in
the same order (libm's `pow` and `log`, as CPython's float `**` and `math.log` call them)."""

from libc.math cimport log, pow, INFINITY, isinf

cdef double _square(double d) except? -1.0:
    # CPython's float ** 2.0: libm's pow (not d * d, which may round differently), OverflowError on overflow
    cdef double r = pow(d, 2.0)
    if isinf(r) and not isinf(d):
        raise OverflowError(34, "Numerical result out of range")
    return r


def class_vote(double vote, dict terms, dict x, double half_log_tau):
    """`vote` plus each feature's Gaussian log density; KeyError when `x` lacks a feature."""
    cdef double log_p
    cdef tuple t
    for att_idx, t in terms.items():
        log_p = _square(<double>x[att_idx] - <double>t[0]) / <double>t[1] - half_log_tau - <double>t[2]
        if log_p > -INFINITY:
            vote += log_p
    return vote


def update_rows(dict x, dict rows, y, double w, terms):
    """The Gaussian splitters' updates the rows cover (see `_Leaf.update_splitters`). Returns the
    features left to the general path, and whether class y's terms stay valid."""
    cdef double v, n, mean_old, mean_new, ddof, variance
    cdef list rest = []
    cdef bint keep = terms is not None
    for att_id, att_val in x.items():
        row = rows.get(att_id)
        if row is None or att_val is None or type(att_val) is not float:
            rest.append(att_id)
            continue
        low, high, var, mean, ddof_obj = <tuple>row
        v = <double>att_val
        if v < <double>low[y]:
            low[y] = att_val
        if v > <double>high[y]:
            high[y] = att_val
        n = <double>mean.n + w
        mean.n = n
        mean_old = mean._mean
        mean_new = mean_old + (w / n) * (v - mean_old)
        mean._mean = mean_new
        var._S = <double>var._S + w * (v - mean_old) * (v - mean_new)
        if keep:
            ddof = ddof_obj
            variance = <double>var._S / (n - ddof) if n > ddof else 0.0
            if variance > 0.0 and att_id in terms:
                terms[att_id] = (mean_new, -2.0 * variance, 0.5 * log(variance))
            else:
                keep = False
    return rest, keep
