# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The per-record arithmetic of `training.hoeffding._Leaf` compiled: the same IEEE operations in
the same order (libm's `pow` and `log`, as CPython's float `**` and `math.log` call them)."""

from libc.math cimport exp, log, pow, INFINITY, isinf

cdef enum:
    _LO = 1  # ClassRows' slot flags
    _HI = 2
    _DIRTY = 4

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


from cpython.mem cimport PyMem_Realloc, PyMem_Free


cdef tuple _ALL_KEPT = ((), True)  # ClassRows.update's answers when every feature had its slot (no allocation)
cdef tuple _ALL_DROPPED = ((), False)


cdef double *_grown(double *p, Py_ssize_t cap) except NULL:
    cdef double *q = <double *>PyMem_Realloc(p, cap * sizeof(double))
    if q is NULL:
        raise MemoryError()
    return q


cdef class ClassRows:
    """One leaf's Gaussian sums of class y, per feature: what River keeps in each `GaussianSplitter`'s
    class-y `Gaussian` (its `Var`'s `_S`, its `Mean`'s `n` and `_mean`) and min/max maps, held here as
    C doubles while the leaf learns. River's objects are written back (`flush`) before anything reads
    them; a slot's values are read from them when it is attached (`rows[att_id] = row`)."""
    cdef readonly object y
    cdef dict slot  # feature -> slot index
    cdef list objs  # per slot: (low map, high map, Var, Mean, ddof), River's objects
    cdef list lo, hi  # per slot: the min / max value objects, as River would store them
    cdef double *n
    cdef double *m
    cdef double *s
    cdef double *ddof
    cdef double *lo_d
    cdef double *hi_d
    cdef unsigned char *flags  # _LO: lo is a float (lo_d holds it), _HI: the same for hi, _DIRTY: not flushed
    cdef Py_ssize_t size, cap

    def __cinit__(self, y):
        self.y = y
        self.slot = {}
        self.objs = []
        self.lo = []
        self.hi = []

    def __dealloc__(self):
        PyMem_Free(self.n)
        PyMem_Free(self.m)
        PyMem_Free(self.s)
        PyMem_Free(self.ddof)
        PyMem_Free(self.lo_d)
        PyMem_Free(self.hi_d)
        PyMem_Free(self.flags)

    def __len__(self):
        return len(self.slot)

    def __contains__(self, att_id):
        return att_id in self.slot

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = self.cap * 2 if self.cap else 16
        cdef unsigned char *f
        self.n = _grown(self.n, cap)
        self.m = _grown(self.m, cap)
        self.s = _grown(self.s, cap)
        self.ddof = _grown(self.ddof, cap)
        self.lo_d = _grown(self.lo_d, cap)
        self.hi_d = _grown(self.hi_d, cap)
        f = <unsigned char *>PyMem_Realloc(self.flags, cap)
        if f is NULL:
            raise MemoryError()
        self.flags = f
        self.cap = cap
        return 0

    cdef void _read(self, Py_ssize_t i):
        # the slot's values from River's objects (which hold the truth when this is called)
        low, high, var, mean, ddof = <tuple>self.objs[i]
        lo, hi = low[self.y], high[self.y]
        self.lo[i], self.hi[i] = lo, hi
        self.n[i] = mean.n
        self.m[i] = mean._mean
        self.s[i] = var._S
        self.ddof[i] = ddof
        self.flags[i] = (_LO if type(lo) is float else 0) | (_HI if type(hi) is float else 0)
        if type(lo) is float:
            self.lo_d[i] = lo
        if type(hi) is float:
            self.hi_d[i] = hi

    cdef void _write(self, Py_ssize_t i):
        low, high, var, mean, ddof = <tuple>self.objs[i]
        low[self.y] = self.lo[i]
        high[self.y] = self.hi[i]
        mean.n = self.n[i]
        mean._mean = self.m[i]
        var._S = self.s[i]
        self.flags[i] &= ~_DIRTY

    def __setitem__(self, att_id, tuple row):
        """Attach a feature's row (low map, high map, Var, Mean, ddof) when River's values are floats
        (anything else stays with River's own update: the same operations on other types)."""
        low, high, var, mean, ddof = row
        if not (type(mean.n) is float and type(mean._mean) is float and type(var._S) is float
                and type(ddof) is int):
            return
        i = self.slot.get(att_id)
        if i is None:
            if self.size == self.cap:
                self._grow()
            i = self.size
            self.size += 1
            self.objs.append(row)
            self.lo.append(None)
            self.hi.append(None)
            self.slot[att_id] = i
        else:
            self.objs[i] = row
        self._read(i)

    def get(self, att_id):
        """A feature's row with River's objects brought up to date (the caller updates them, then `reload`s)."""
        i = self.slot.get(att_id)
        if i is None:
            return None
        if self.flags[<Py_ssize_t>i] & _DIRTY:
            self._write(i)
        return self.objs[i]

    def reload(self, att_id):
        """Read a feature's values again from River's objects (after an update made on them)."""
        i = self.slot.get(att_id)
        if i is not None:
            self._read(i)

    def flush(self):
        """Write every changed value back to River's objects."""
        cdef Py_ssize_t i
        for i in range(self.size):
            if self.flags[i] & _DIRTY:
                self._write(i)

    def update(self, dict x, double w, terms):
        """The Gaussian splitters' updates of class y for each float value of `x` with a slot (see
        `_Leaf.update_splitters`: the same operations in the same order). Returns the features left to
        the general path (an empty tuple when none), and whether class y's terms stay valid."""
        cdef double v, n, mean_old, mean_new, ddof, variance, S
        cdef Py_ssize_t i
        cdef list rest = None
        cdef bint keep = terms is not None
        cdef unsigned char f
        for att_id, att_val in x.items():
            at = self.slot.get(att_id)
            if at is None or type(att_val) is not float:
                if rest is None:
                    rest = []
                rest.append(att_id)
                continue
            i = at
            v = <double>att_val
            f = self.flags[i]
            if f & _LO:
                if v < self.lo_d[i]:
                    self.lo_d[i] = v
                    self.lo[i] = att_val
            elif att_val < self.lo[i]:
                self.lo[i] = att_val
                self.lo_d[i] = v
                f |= _LO
            if f & _HI:
                if v > self.hi_d[i]:
                    self.hi_d[i] = v
                    self.hi[i] = att_val
            elif att_val > self.hi[i]:
                self.hi[i] = att_val
                self.hi_d[i] = v
                f |= _HI
            self.flags[i] = f | _DIRTY
            n = self.n[i] + w
            self.n[i] = n
            mean_old = self.m[i]
            mean_new = mean_old + (w / n) * (v - mean_old)
            self.m[i] = mean_new
            S = self.s[i] + w * (v - mean_old) * (v - mean_new)
            self.s[i] = S
            if keep:
                ddof = self.ddof[i]
                variance = S / (n - ddof) if n > ddof else 0.0
                if variance > 0.0 and att_id in terms:
                    terms[att_id] = (mean_new, -2.0 * variance, 0.5 * log(variance))
                else:
                    keep = False
        if rest is None:
            return _ALL_KEPT if keep else _ALL_DROPPED
        return rest, keep


cdef object _ABSENT = object()


def votes(dict stats, dict cache, dict x, double half_log_tau):
    """`_Leaf._votes` and `_normalised` for a leaf whose classes all have their Gaussian terms cached
    and a record with every feature; None otherwise (nothing changed: the Python path runs)."""
    cdef double total_weight = 0.0, class_weight, ratio, vote, log_p, max_ll = 0.0, lse, acc
    cdef dict out = {}
    cdef tuple t
    cdef bint first = True
    for value in stats.values():  # sum(stats.values()): left to right (a float's 0 + w is w)
        total_weight += <double>value
    if not stats or total_weight == 0:
        return {}
    for class_index, value in stats.items():
        class_weight = <double>value
        if not class_weight > 0:
            out[class_index] = 0.0
            continue
        terms = cache.get(class_index, _ABSENT)
        if terms is _ABSENT or terms is None:
            return None
        ratio = class_weight / total_weight
        if not ratio > 0:  # math.log raises on 0 (and returns nan on nan): the Python path says so
            return None
        vote = log(ratio)
        for att_idx, t in (<dict>terms).items():
            item = x.get(att_idx, _ABSENT)
            if item is _ABSENT:
                return None
            log_p = _square(<double>item - <double>t[0]) / <double>t[1] - half_log_tau - <double>t[2]
            if log_p > -INFINITY:
                vote += log_p
        out[class_index] = vote
    # _normalised: max (the first of equals; nan as Python's max), log-sum-exp, then each exp
    for value in out.values():
        if first or <double>value > max_ll:
            max_ll = <double>value
            first = False
    acc = 0.0
    for value in out.values():
        acc += exp(<double>value - max_ll)
    lse = max_ll + log(acc)
    for class_index, value in out.items():
        out[class_index] = exp(<double>value - lse)
    return out


# -- training.online.Linear: the same IEEE operations in the same order as its pure-Python path --

from libc.math cimport sqrt


def linear_features(dict x, dict stats, double n, bint learn):
    """`Linear._features`: x standardised, after Welford's update of its running statistics if `learn`."""
    cdef list z = []
    cdef list s
    cdef double v, d, mean, m2
    for k, val in x.items():
        if type(val) is str:
            z.append(((k, val), 1.0))
            continue
        if val is None:
            continue
        s = stats.get(k)
        if learn:
            if s is None:
                s = [0.0, 0.0, 0.0]
                stats[k] = s
            v = <double>val
            mean = <double>s[0]
            d = v - mean
            mean = mean + d / n
            m2 = <double>s[1] + d * (v - mean)
            s[0] = mean
            s[1] = m2
            s[2] = 1.0 / sqrt(m2 / n) if m2 > 0 else 0.0
        elif s is None:
            continue
        z.append((k, (<double>val - <double>s[0]) * <double>s[2]))
    return z


def linear_score(dict w, double s, list z):
    """P(class) of one weight vector: the logistic of its clipped score."""
    cdef tuple t
    for t in z:
        s = s + <double>w.get(t[0], 0.0) * <double>t[1]
    s = s if s < 30.0 else 30.0
    s = s if s > -30.0 else -30.0
    return 1.0 / (1.0 + exp(-s))


def linear_step(dict w, list z, double step):
    """One SGD step of one weight vector."""
    cdef tuple t
    for t in z:
        k = t[0]
        w[k] = <double>w.get(k, 0.0) - step * <double>t[1]


def top(dict d):
    """`max(d, key=d.__getitem__)`: the first key of the greatest value, by Python's `>` between the
    values as `max` compares them (ValueError when empty)."""
    cdef bint first = True
    best_key = best = None
    for k, v in d.items():
        if first:
            best_key, best, first = k, v, False
        elif v > best:
            best_key, best = k, v
    if first:
        raise ValueError("max() iterable argument is empty")
    return best_key


# -- training.online.Window: the k nearest rows, the same operations in the same order as its Python path --

def window_nearest(double[::1] points, Py_ssize_t width, Py_ssize_t filled, double[::1] v, Py_ssize_t k):
    """Indices of the `k` rows of `points` (`filled` rows of `width`) nearest `v` by squared distance,
    nearest first (the first row of equals first)."""
    cdef double bd[64]
    cdef Py_ssize_t bi[64]
    cdef Py_ssize_t i, j, m = 0, base, at
    cdef double d, t
    if k > 64 or k < 1:
        raise ValueError("k must be in [1, 64]")
    for i in range(filled):
        base = i * width
        d = 0.0
        for j in range(width):  # no early exit: a short loop the compiler can unroll
            t = points[base + j] - v[j]
            d = d + t * t
        if m == k and d >= bd[k - 1]:
            continue
        at = m if m < k else k - 1
        while at > 0 and bd[at - 1] > d:
            if at < k:
                bd[at] = bd[at - 1]
                bi[at] = bi[at - 1]
            at -= 1
        bd[at] = d
        bi[at] = i
        if m < k:
            m += 1
    return [bi[i] for i in range(m)]


# -- training.online.Pooled's per-record arithmetic (and Window's and Linear's around it), the same
# operations in the same order as their Python paths --

from cpython.array cimport array as carray, clone

cdef carray _DOUBLES = carray("d")


def window_vector(list z, dict columns, Py_ssize_t width):
    """`Window.vector` when every feature of z has its column (None otherwise: the Python path grows the rows)."""
    cdef carray v = clone(_DOUBLES, width, True)
    cdef tuple t
    cdef Py_ssize_t j
    for t in z:
        col = columns.get(t[0])
        if col is None:
            return None
        j = <Py_ssize_t>col
        if j >= width:
            return None
        v.data.as_doubles[j] = <double>t[1]
    return v


def window_shares(carray points, Py_ssize_t width, Py_ssize_t filled, carray v, Py_ssize_t k, list labels,
                  list classes):
    """`Window.predict_proba_one`'s class shares among the k nearest rows (`window_nearest`'s), smoothed by 0.5."""
    cdef double bd[64]
    cdef Py_ssize_t bi[64]
    cdef Py_ssize_t i, j, m = 0, base, at
    cdef double d, t, total, d0, d1, d2, d3, e0, e1, e2, e3
    cdef double ds[4]
    cdef Py_ssize_t n4, r
    cdef double *p = points.data.as_doubles
    cdef double *q = v.data.as_doubles
    cdef dict counts = dict.fromkeys(classes, 0.5)
    if k > 64 or k < 1:
        raise ValueError("k must be in [1, 64]")
    if len(points) < filled * width or len(v) < width:
        raise ValueError("points or v too short")
    i = 0
    while i < filled:
        # four rows at a time: four independent sums (each in the Python path's order) instead of one chain
        n4 = filled - i if filled - i < 4 else 4
        base = i * width
        d0 = d1 = d2 = d3 = 0.0
        if n4 == 4:
            for j in range(width):
                t = q[j]
                e0 = p[base + j] - t
                e1 = p[base + width + j] - t
                e2 = p[base + 2 * width + j] - t
                e3 = p[base + 3 * width + j] - t
                d0 = d0 + e0 * e0
                d1 = d1 + e1 * e1
                d2 = d2 + e2 * e2
                d3 = d3 + e3 * e3
        else:
            for j in range(width):
                t = q[j]
                e0 = p[base + j] - t
                d0 = d0 + e0 * e0
                if n4 > 1:
                    e1 = p[base + width + j] - t
                    d1 = d1 + e1 * e1
                if n4 > 2:
                    e2 = p[base + 2 * width + j] - t
                    d2 = d2 + e2 * e2
        ds[0], ds[1], ds[2], ds[3] = d0, d1, d2, d3
        for r in range(n4):
            d = ds[r]
            if m == k and d >= bd[k - 1]:
                continue
            at = m if m < k else k - 1
            while at > 0 and bd[at - 1] > d:
                if at < k:
                    bd[at] = bd[at - 1]
                    bi[at] = bi[at - 1]
                at -= 1
            bd[at] = d
            bi[at] = i + r
            if m < k:
                m += 1
        i += n4
    for i in range(m):
        c = labels[bi[i]]
        counts[c] = <double>counts.get(c, 0.5) + 1.0
    total = <double>k + 0.5 * <double>len(counts)
    return {c: <double>n / total for c, n in counts.items()}


def linear_learn(dict weights, dict bias, list z, y, double rate):
    """`Linear.learn_one`'s SGD step for a class it knows; returns each weight vector's score before it."""
    cdef dict scores = {}
    cdef double p, step
    for c, w in weights.items():
        p = linear_score(<dict>w, <double>bias[c], z)
        scores[c] = p
        step = rate * (p - (1.0 if c == y else 0.0))
        bias[c] = <double>bias[c] - step
        linear_step(<dict>w, z, step)
    return scores


def linear_proba(dict weights, dict bias, list classes, list z):
    """`Linear._proba(Linear._scores(z))`."""
    cdef dict scores = {}
    cdef double total = 0.0, p
    for c, w in weights.items():
        scores[c] = linear_score(<dict>w, <double>bias[c], z)
    if len(classes) < 2:
        return dict.fromkeys(classes, 1.0)
    if len(classes) == 2:
        p = <double>scores[classes[1]]
        return {classes[0]: 1.0 - p, classes[1]: p}
    for s in scores.values():
        total += <double>s
    if total == 0.0:
        total = 1.0
    return {c: <double>scores[c] / total for c in classes}


cdef inline double _floored_log(double p, double floor):
    return log(p if p > floor else floor)


def pool_logs(dict tree, dict lin, dict near, double floor):
    """`Pooled._members`' classes and, per class, each member's floored log-probability (0 for a member with
    nothing to say)."""
    cdef list classes = list(tree)
    cdef list logs = []
    cdef double a, b, n
    cdef bint has_tree = len(tree) > 0, has_lin = len(lin) > 0, has_near = near is not None and len(near) > 0
    if has_lin:
        for c in lin:
            if c not in tree:
                classes.append(c)
    for c in classes:
        n = _floored_log(<double>near.get(c, 0.0), floor) if has_near else 0.0
        a = _floored_log(<double>tree.get(c, 0.0), floor) if has_tree else 0.0
        b = _floored_log(<double>lin.get(c, 0.0), floor) if has_lin else 0.0
        logs.append((a, b, n))
    return classes, logs


def pool_softmax(list logs, double w0, double w1, double w2):
    """`Pooled._pool`: the softmax of the weighted log-probabilities."""
    cdef Py_ssize_t i, m = len(logs)
    cdef double top = 0.0, total = 0.0, s
    cdef tuple t
    cdef list scores = [], out
    for i in range(m):
        t = <tuple>logs[i]
        s = w0 * <double>t[0] + w1 * <double>t[1] + w2 * <double>t[2]
        scores.append(s)
        if i == 0 or s > top:
            top = s
    out = []
    for s in scores:
        s = exp(s - top)
        out.append(s)
        total += s
    return [<double>s / total for s in out]


def pool_gradient(list classes, list logs, list p, y, double rate):
    """`Pooled.learn_one`'s step: the log-loss gradient of the three weights, scaled down by the spread."""
    cdef Py_ssize_t i, k = len(logs)
    cdef double m0 = 0.0, m1 = 0.0, m2 = 0.0, spread = 0.0, step, g, g0 = 0.0, g1 = 0.0, g2 = 0.0
    cdef double a, b, n
    cdef tuple t
    for t in logs:
        m0 += <double>t[0]
        m1 += <double>t[1]
        m2 += <double>t[2]
    m0, m1, m2 = m0 / k, m1 / k, m2 / k
    for t in logs:
        a, b, n = <double>t[0] - m0, <double>t[1] - m1, <double>t[2] - m2
        spread += pow(a, 2.0) + pow(b, 2.0) + pow(n, 2.0)
    step = rate / (1 + (1 + 4.0 / k * spread) / 10)
    for i in range(k):
        t = <tuple>logs[i]
        g = step * (<double>(classes[i] == y) - <double>p[i])
        g0 += g * <double>t[0]
        g1 += g * <double>t[1]
        g2 += g * <double>t[2]
    return g0, g1, g2
