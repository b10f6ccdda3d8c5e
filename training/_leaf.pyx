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


# -- training.online.Pooled's linear model and window as one object: the same operations in the same order
# as Linear's and Window's paths (with the helpers above), on flat arrays under one feature index, so that a
# record costs two calls (score, learn) and no intermediate dicts --

from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memset


cdef void *_resized(void *p, size_t n) except NULL:
    cdef void *q = realloc(p, n if n else 1)
    if q is NULL:
        raise MemoryError()
    return q


cdef object _top_of(dict d):
    cdef bint first = True
    best_key = best = None
    for k, v in d.items():
        if first:
            best_key, best, first = k, v, False
        elif v > best:
            best_key, best = k, v
    return best_key


cdef void _softmax(double *logs, Py_ssize_t m, double w0, double w1, double w2, double *out):
    """pool_softmax on flat logs (3 per class), into out."""
    cdef Py_ssize_t i
    cdef double top = 0.0, total = 0.0, s
    for i in range(m):
        s = w0 * logs[3 * i] + w1 * logs[3 * i + 1] + w2 * logs[3 * i + 2]
        out[i] = s
        if i == 0 or s > top:
            top = s
    for i in range(m):
        s = exp(out[i] - top)
        out[i] = s
        total += s
    for i in range(m):
        out[i] = out[i] / total


cdef tuple _gradient(list classes, double *logs, double *p, Py_ssize_t k, y, double rate):
    """pool_gradient on flat logs."""
    cdef Py_ssize_t i
    cdef double m0 = 0.0, m1 = 0.0, m2 = 0.0, spread = 0.0, step, g, g0 = 0.0, g1 = 0.0, g2 = 0.0
    cdef double a, b, n
    for i in range(k):
        m0 += logs[3 * i]
        m1 += logs[3 * i + 1]
        m2 += logs[3 * i + 2]
    m0, m1, m2 = m0 / k, m1 / k, m2 / k
    for i in range(k):
        a, b, n = logs[3 * i] - m0, logs[3 * i + 1] - m1, logs[3 * i + 2] - m2
        spread += pow(a, 2.0) + pow(b, 2.0) + pow(n, 2.0)
    step = rate / (1 + (1 + 4.0 / k * spread) / 10)
    for i in range(k):
        g = step * (<double>(classes[i] == y) - p[i])
        g0 += g * logs[3 * i]
        g1 += g * logs[3 * i + 1]
        g2 += g * logs[3 * i + 2]
    return g0, g1, g2


cdef inline void _step(double *w, Py_ssize_t *zi, double *zv, Py_ssize_t zn, double step):
    """linear_step on the flat arrays."""
    cdef Py_ssize_t j
    for j in range(zn):
        w[zi[j]] = w[zi[j]] - step * zv[j]


cimport cython


@cython.no_gc  # one per record: not tracked by the collector (what it holds never refers back to it)
cdef class Scored:
    """What `PoolCore.score` gave for one record, kept until its label: the pool's classes, per class each
    member's floored log-probability and the pool's probability, the record's window row."""
    cdef readonly object x, weights, tree_class, pool_class
    cdef readonly list classes
    cdef readonly dict proba
    cdef double *logs  # 3 per class: tree, linear, window
    cdef double *p
    cdef double *v
    cdef Py_ssize_t m, vlen
    cdef bint has_v

    def __dealloc__(self):
        free(self.logs)


cdef class PoolCore:
    """`Pooled`'s `Linear` model and `Window` as one object (see training.online.Pooled)."""
    cdef readonly double rate, floor
    cdef readonly bint use_window
    cdef readonly Py_ssize_t size, k
    # Pooled's: its weights (tree, linear, window), its guard's accuracies and rate, its cache of scored records
    cdef public list weights
    cdef public double pool_fast, tree_fast, guard_alpha, pool_rate, shrink
    cdef public Py_ssize_t cache_size
    cdef public dict scored
    # features: numeric ones by name, text ones by name then text; one index for both
    cdef dict num
    cdef dict text
    cdef list keys  # index -> the reference's key: the feature, or (feature, text)
    cdef Py_ssize_t nf, fcap
    cdef double *mean
    cdef double *m2
    cdef double *inv
    cdef Py_ssize_t *wcol  # index -> window column (-1: none)
    cdef long long n  # records the linear model learned
    # classes: ids in order of arrival; `classes` sorted as Linear's
    cdef readonly list classes
    cdef dict cid
    cdef list by_id
    cdef Py_ssize_t nc
    cdef Py_ssize_t *sorted_ids
    cdef double *lp  # per class id: the linear model's probability (score's scratch)
    cdef double *cnt  # per class id: the window's counts (score's scratch)
    # the linear weights: one vector per weight class (Linear.weights' order)
    cdef Py_ssize_t nw
    cdef Py_ssize_t *wid
    cdef double **W
    cdef double *bias
    # the window: `size` rows of `width` (its own column order), row-major; labels as class ids
    cdef Py_ssize_t width, wn
    cdef list wkeys  # column -> index
    cdef double *points
    cdef Py_ssize_t *labels
    # a record standardised (scratch): feature indices and values, in the record's order
    cdef Py_ssize_t zn, zcap
    cdef Py_ssize_t *zi
    cdef double *zv
    cdef list kobj  # per place in a record: the numeric feature's key object last seen there (_remember)
    cdef Py_ssize_t *kidx
    cdef Py_ssize_t kcap

    def __cinit__(self, double rate=0.01, double floor=1e-4, bint use_window=True, Py_ssize_t size=200,
                  Py_ssize_t k=5):
        if not 1 <= k <= min(64, size):
            raise ValueError(f"k must be in [1, min(64, size)], got {k!r}")
        self.rate, self.floor, self.use_window, self.size, self.k = rate, floor, use_window, size, k
        self.num, self.text, self.keys = {}, {}, []
        self.classes, self.cid, self.by_id = [], {}, []
        self.wkeys = []
        self.kobj = []
        self.weights, self.scored = [1.0, 0.0, 0.0], {}
        self.pool_fast = self.tree_fast = 0.5
        self.pool_rate, self.shrink, self.cache_size = 0.05, 0.005, 4096
        self.labels = <Py_ssize_t *>_resized(NULL, size * sizeof(Py_ssize_t))
        for i in range(size):
            self.labels[i] = -1

    def __dealloc__(self):
        cdef Py_ssize_t j
        for j in range(self.nw):
            free(self.W[j])
        free(self.W)
        free(self.wid)
        free(self.bias)
        free(self.mean)
        free(self.m2)
        free(self.inv)
        free(self.wcol)
        free(self.sorted_ids)
        free(self.lp)
        free(self.cnt)
        free(self.points)
        free(self.labels)
        free(self.zi)
        free(self.zv)
        free(self.kidx)

    # -- features --

    cdef Py_ssize_t _new_feature(self, key) except -1:
        cdef Py_ssize_t i = self.nf, cap, j
        if i == self.fcap:
            cap = self.fcap * 2 if self.fcap else 16
            self.mean = <double *>_resized(self.mean, cap * sizeof(double))
            self.m2 = <double *>_resized(self.m2, cap * sizeof(double))
            self.inv = <double *>_resized(self.inv, cap * sizeof(double))
            self.wcol = <Py_ssize_t *>_resized(self.wcol, cap * sizeof(Py_ssize_t))
            for j in range(self.nw):
                self.W[j] = <double *>_resized(self.W[j], cap * sizeof(double))
                memset(self.W[j] + self.fcap, 0, (cap - self.fcap) * sizeof(double))
            self.fcap = cap
        self.mean[i] = self.m2[i] = self.inv[i] = 0.0
        self.wcol[i] = -1
        self.keys.append(key)
        self.nf += 1
        return i

    cdef Py_ssize_t _text_index(self, k, val) except -1:
        cdef dict values = self.text.get(k)
        if values is None:
            values = self.text[k] = {}
        at = values.get(val)
        if at is not None:
            return <Py_ssize_t>at
        i = self._new_feature((k, val))
        values[val] = i
        return i

    cdef int _standardise(self, dict x, bint learn) except -1:
        """`Linear._features` into zi / zv (after Welford's update of the running statistics if `learn`)."""
        cdef Py_ssize_t m = 0, i, pos = -1, nk = len(self.kobj)
        cdef double v, d, mean, m2, n
        cdef list kobj = self.kobj
        if len(x) > self.zcap:
            self.zcap = len(x) * 2
            self.zi = <Py_ssize_t *>_resized(self.zi, self.zcap * sizeof(Py_ssize_t))
            self.zv = <double *>_resized(self.zv, self.zcap * sizeof(double))
        if learn:
            self.n += 1
        n = <double>self.n
        for key, val in x.items():
            pos += 1
            if type(val) is str:
                self.zi[m] = self._text_index(key, val)
                self.zv[m] = 1.0
                m += 1
                continue
            if val is None:
                continue
            if pos < nk and kobj[pos] is key:  # the feature at this place in the record before: its index
                i = self.kidx[pos]
            else:
                at = self.num.get(key)
                if at is None:
                    if not learn:
                        continue
                    i = self._new_feature(key)
                    self.num[key] = i
                else:
                    i = <Py_ssize_t>at
                self._remember(pos, key, i)
                nk = len(kobj)
            if learn:
                v = <double>val
                mean = self.mean[i]
                d = v - mean
                mean = mean + d / n
                m2 = self.m2[i] + d * (v - mean)
                self.mean[i] = mean
                self.m2[i] = m2
                self.inv[i] = 1.0 / sqrt(m2 / n) if m2 > 0 else 0.0
            self.zi[m] = i
            self.zv[m] = (<double>val - self.mean[i]) * self.inv[i]
            m += 1
        self.zn = m
        return 0

    cdef int _remember(self, Py_ssize_t pos, key, Py_ssize_t i) except -1:
        """The numeric feature at place `pos` of a record and its index: the next record with the same key
        object there skips the lookup (records made alike share their key objects)."""
        cdef list kobj = self.kobj
        if pos >= self.kcap:
            self.kcap = pos * 2 + 8
            self.kidx = <Py_ssize_t *>_resized(self.kidx, self.kcap * sizeof(Py_ssize_t))
        while len(kobj) <= pos:
            kobj.append(_ABSENT)
        kobj[pos] = key
        self.kidx[pos] = i
        return 0

    # -- the linear model --

    cdef double _score(self, Py_ssize_t slot):
        cdef double s = self.bias[slot]
        cdef double *w = self.W[slot]
        cdef Py_ssize_t j
        for j in range(self.zn):
            s = s + w[self.zi[j]] * self.zv[j]
        s = s if s < 30.0 else 30.0
        s = s if s > -30.0 else -30.0
        return 1.0 / (1.0 + exp(-s))

    cdef void _linear_proba(self):
        """`Linear._proba(Linear._scores(z))` into lp, per class id."""
        cdef Py_ssize_t j
        cdef double total = 0.0, p
        if self.nc < 2:
            for j in range(self.nc):
                self.lp[j] = 1.0
            return
        if self.nc == 2:
            p = self._score(0)  # the one weight vector: the second class's
            self.lp[self.sorted_ids[0]] = 1.0 - p
            self.lp[self.sorted_ids[1]] = p
            return
        for j in range(self.nw):
            p = self._score(j)
            self.lp[self.wid[j]] = p
            total += p
        if total == 0.0:
            total = 1.0
        for j in range(self.nw):
            self.lp[self.wid[j]] = self.lp[self.wid[j]] / total

    cdef Py_ssize_t _add_class(self, y) except -1:
        """Linear.learn_one's new class: the classes sorted, a weight vector per class (one for two classes)."""
        cdef Py_ssize_t c = self.nc, j, at, nw
        cdef Py_ssize_t *wid
        cdef double **W
        cdef double *bias
        self.cid[y] = c
        self.by_id.append(y)
        self.classes.append(y)
        self.classes.sort()
        self.nc += 1
        self.sorted_ids = <Py_ssize_t *>_resized(self.sorted_ids, self.nc * sizeof(Py_ssize_t))
        self.lp = <double *>_resized(self.lp, self.nc * sizeof(double))
        self.cnt = <double *>_resized(self.cnt, self.nc * sizeof(double))
        for j in range(self.nc):
            self.sorted_ids[j] = <Py_ssize_t>self.cid[self.classes[j]]
        first = 1 if self.nc == 2 else 0
        nw = self.nc - first
        wid = <Py_ssize_t *>_resized(NULL, nw * sizeof(Py_ssize_t))
        W = <double **>_resized(NULL, nw * sizeof(double *))
        bias = <double *>_resized(NULL, nw * sizeof(double))
        for j in range(nw):
            wid[j] = self.sorted_ids[first + j]
            W[j] = NULL
            bias[j] = 0.0
            for at in range(self.nw):
                if self.wid[at] == wid[j]:
                    W[j], bias[j] = self.W[at], self.bias[at]
                    self.W[at] = NULL
            if W[j] is NULL:
                W[j] = <double *>calloc(self.fcap if self.fcap else 1, sizeof(double))
                if W[j] is NULL:
                    raise MemoryError()
        for at in range(self.nw):
            free(self.W[at])
        free(self.W)
        free(self.wid)
        free(self.bias)
        self.W, self.wid, self.bias, self.nw = W, wid, bias, nw
        return c

    # -- the window --

    cdef int _columns(self) except -1:
        """`Window.vector`'s new columns: every feature of z without one, in z's order (0 in the rows before)."""
        cdef Py_ssize_t j, i, old = self.width, width = self.width, r, filled
        cdef double *grown
        for j in range(self.zn):
            i = self.zi[j]
            if self.wcol[i] < 0:
                self.wcol[i] = width
                self.wkeys.append(i)
                width += 1
        if width == old:
            return 0
        grown = <double *>calloc(self.size * width, sizeof(double))
        if grown is NULL:
            raise MemoryError()
        filled = self.wn if self.wn < self.size else self.size
        for r in range(filled):
            memcpy(grown + r * width, self.points + r * old, old * sizeof(double))
        free(self.points)
        self.points, self.width = grown, width
        return 0

    cdef void _shares(self, double *v):
        """`Window.predict_proba_one`'s counts among the k nearest rows (window_shares'), into cnt per class id."""
        cdef double bd[64]
        cdef Py_ssize_t bi[64]
        cdef Py_ssize_t i = 0, j, m = 0, base, at, n4, r, k = self.k, width = self.width
        cdef Py_ssize_t filled = self.wn if self.wn < self.size else self.size
        cdef double d, t, d0, d1, d2, d3, e0, e1, e2, e3
        cdef double ds[4]
        cdef double *p = self.points
        while i < filled:
            n4 = filled - i if filled - i < 4 else 4
            base = i * width
            d0 = d1 = d2 = d3 = 0.0
            if n4 == 4:
                for j in range(width):
                    t = v[j]
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
                    t = v[j]
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
        for j in range(self.nc):
            self.cnt[j] = 0.5
        for j in range(m):
            self.cnt[self.labels[bi[j]]] += 1.0

    # -- the pool --

    def score(self, dict x, dict tree, list weights):
        """`Pooled._members` and `_pool` for record x (the tree's probabilities `tree`, the pool's weights)."""
        return self._score_record(x, tree, weights)

    cdef Scored _score_record(self, dict x, dict tree, list weights):
        cdef Scored e = Scored.__new__(Scored)
        cdef Py_ssize_t m, j, c, width
        cdef bint has_tree = len(tree) > 0, has_near = False
        cdef double floor = self.floor, b, n, total = 1.0, w0, w1, w2
        cdef double *logs
        cdef double *p
        cdef dict proba
        e.x, e.weights = x, weights
        if self.nc == 0:  # the linear model knows no class yet: the tree alone
            classes = list(tree)
            m = len(classes)
        else:
            self._standardise(x, False)
            self._linear_proba()
            if self.use_window:
                self._columns()
                e.has_v = True
            classes = list(tree)
            for j in range(self.nc):
                cls = self.classes[j]
                if cls not in tree:
                    classes.append(cls)
            m = len(classes)
        width = self.width if e.has_v else 0
        e.logs = <double *>_resized(NULL, (4 * m + width) * sizeof(double))
        e.m, e.classes, e.vlen = m, classes, width
        logs = e.logs
        p = e.p = e.logs + 3 * m
        if e.has_v:
            e.v = p + m
            memset(e.v, 0, width * sizeof(double))
            for j in range(self.zn):
                e.v[self.wcol[self.zi[j]]] = self.zv[j]
            has_near = (self.wn if self.wn < self.size else self.size) >= self.k
            if has_near:
                self._shares(e.v)
                total = <double>self.k + 0.5 * <double>self.nc
        if self.nc == 0:
            j = 0
            for value in tree.values():
                logs[3 * j] = _floored_log(<double>value, floor)
                logs[3 * j + 1] = logs[3 * j + 2] = 0.0
                j += 1
        else:
            for j in range(m):
                cls = classes[j]
                at = self.cid.get(cls)
                if at is None:
                    b = n = 0.0
                else:
                    c = <Py_ssize_t>at
                    b = self.lp[c]
                    n = self.cnt[c] / total if has_near else 0.0
                logs[3 * j + 2] = _floored_log(n, floor) if has_near else 0.0
                logs[3 * j] = _floored_log(<double>tree.get(cls, 0.0), floor) if has_tree else 0.0
                logs[3 * j + 1] = _floored_log(b, floor)
        if m == 0:
            e.proba = {}
            return e
        w0, w1, w2 = weights
        _softmax(logs, m, w0, w1, w2, p)
        proba = {}
        c = 0
        for j in range(m):
            proba[classes[j]] = p[j]
            if p[j] > p[c]:
                c = j
        e.proba = proba
        e.pool_class = classes[c]
        e.tree_class = _top_of(tree) if has_tree else None
        return e

    def learn(self, dict x, y, Scored e, list weights, bint step, double rate, double shrink):
        """`Pooled.learn_one`'s step of the pool's weights (if `step`; returns the weights, new ones if
        stepped), then `Linear.learn_one` and `Window.learn_one`."""
        return self._learn_record(x, y, e, weights, step, rate, shrink)

    cdef list _learn_record(self, dict x, y, Scored e, list weights, bint step, double rate, double shrink):
        cdef double g0, g1, g2, w0, w1, w2, keep, st, pc
        cdef double *p
        cdef Py_ssize_t j, c, row
        if step and e.m > 1 and y in e.classes:
            w0, w1, w2 = weights
            p = e.p
            if e.weights is not weights:  # learned since it was scored: the pool's output has changed
                _softmax(e.logs, e.m, w0, w1, w2, p)
            g0, g1, g2 = _gradient(e.classes, e.logs, p, e.m, y, rate)
            keep = 1 - shrink
            weights = [1 + keep * (w0 + g0 - 1), keep * (w1 + g1), keep * (w2 + g2)]
        self._standardise(x, True)
        at = self.cid.get(y)
        c = self._add_class(y) if at is None else <Py_ssize_t>at
        for j in range(self.nw):
            pc = self._score(j)
            st = self.rate * (pc - (1.0 if self.wid[j] == c else 0.0))
            self.bias[j] = self.bias[j] - st
            _step(self.W[j], self.zi, self.zv, self.zn, st)
        if self.use_window:
            if not e.has_v:
                self._standardise(x, False)
                self._columns()
            row = self.wn % self.size
            if e.has_v:
                memset(self.points + row * self.width, 0, self.width * sizeof(double))
                memcpy(self.points + row * self.width, e.v, e.vlen * sizeof(double))
            else:
                memset(self.points + row * self.width, 0, self.width * sizeof(double))
                for j in range(self.zn):
                    self.points[row * self.width + self.wcol[self.zi[j]]] = self.zv[j]
            self.labels[row] = c
            self.wn += 1
        return weights

    # -- the state as the reference's (Linear's and Window's attributes): checkpoints and the equality test --

    def state(self):
        """Linear's and Window's attributes (a weight for every feature known: 0 where the reference has none)."""
        cdef Py_ssize_t i, j, r
        keys = self.keys
        num = set(self.num.values())
        stats = {keys[i]: [self.mean[i], self.m2[i], self.inv[i]] for i in range(self.nf) if i in num}
        weights, bias = {}, {}
        for j in range(self.nw):
            c = self.by_id[self.wid[j]]
            weights[c] = {keys[i]: self.W[j][i] for i in range(self.nf)}
            bias[c] = self.bias[j]
        columns = {keys[self.wkeys[j]]: j for j in range(self.width)}
        points = [self.points[r] for r in range(self.size * self.width)]
        labels = [self.by_id[self.labels[r]] if self.labels[r] >= 0 else None for r in range(self.size)]
        return {"n": self.n, "stats": stats, "classes": list(self.classes), "weights": weights, "bias": bias,
                "columns": columns, "width": self.width, "points": points, "labels": labels, "window_n": self.wn}

    def load(self, dict state):
        """Fills a new core from `state` (the form `state()` gives); ValueError on a key it cannot place."""
        cdef Py_ssize_t i, j, r
        if self.nf or self.nc:
            raise ValueError("not a new core")
        for key, s in state["stats"].items():
            i = self._new_feature(key)
            self.num[key] = i
            self.mean[i], self.m2[i], self.inv[i] = s
        self.n = state["n"]
        columns = state["columns"]
        for key in [*[k for w in state["weights"].values() for k in w], *columns]:
            if key in self.num:
                continue
            if not (type(key) is tuple and len(key) == 2 and type(key[1]) is str):
                raise ValueError(f"feature {key!r}: neither numeric with statistics nor (feature, text)")
            self._text_index(key[0], key[1])
        for c in state["classes"]:
            self._add_class(c)  # the same classes; the weight vectors are set below
        if list(self.classes) != list(state["classes"]) or list(state["weights"]) != [self.by_id[self.wid[j]]
                                                                                    for j in range(self.nw)]:
            raise ValueError("classes or weight vectors out of order")
        for j in range(self.nw):
            c = self.by_id[self.wid[j]]
            self.bias[j] = state["bias"][c]
            for key, w in state["weights"][c].items():
                self.W[j][self._index(key)] = w
        width = state["width"]
        for key, col in sorted(columns.items(), key=lambda kc: kc[1]):
            if col != len(self.wkeys):
                raise ValueError("window columns out of order")
            i = self._index(key)
            self.wcol[i] = col
            self.wkeys.append(i)
        if width != len(columns) or len(state["points"]) != self.size * width or len(state["labels"]) != self.size:
            raise ValueError("window rows of another shape")
        self.points = <double *>_resized(self.points, self.size * width * sizeof(double))
        self.width = width
        for r in range(self.size * width):
            self.points[r] = state["points"][r]
        for r in range(self.size):
            label = state["labels"][r]
            self.labels[r] = -1 if label is None else <Py_ssize_t>self.cid[label]
        self.wn = state["window_n"]

    cdef Py_ssize_t _index(self, key) except -1:
        at = self.num.get(key)
        if at is None:
            at = self.text[key[0]][key[1]]
        return <Py_ssize_t>at

    # -- Pooled's record in one call each way: its cache of scored records and its guard held here --

    def serve(self, dict x, dict tree):
        """`Pooled.predict_proba_one` given the tree's probabilities."""
        cdef dict scored = self.scored
        cdef Scored e
        if len(scored) >= self.cache_size:
            del scored[next(iter(scored))]
        e = self._score_record(x, tree, self.weights)
        scored[id(x)] = e
        if self.pool_fast < self.tree_fast and self.guard_alpha and e.m:
            return tree
        return e.proba

    def learn_one(self, dict x, y, inner):
        """`Pooled.learn_one`: the same steps in the same order (`inner` is the pool's renewing tree)."""
        cdef Scored e = self.scored.pop(id(x), None)
        cdef double a
        if e is None or e.x is not x:
            e = self._score_record(x, inner.predict_proba_one(x), self.weights)
        elif self.guard_alpha and e.tree_class is not None:
            a = self.guard_alpha
            self.pool_fast = self.pool_fast + a * (<double>(e.pool_class == y) - self.pool_fast)
            self.tree_fast = self.tree_fast + a * (<double>(e.tree_class == y) - self.tree_fast)
        renewals = inner.renewals
        inner.learn_one(x, y)
        renewed = inner.renewals != renewals
        if renewed:  # a fresh tree serves: the pool starts again as the tree alone
            self.weights = [1.0, 0.0, 0.0]
            self.pool_fast = self.tree_fast = <double>inner.fast
        self.weights = self._learn_record(x, y, e, self.weights, not renewed and inner.fresh, self.pool_rate,
                                          self.shrink)
