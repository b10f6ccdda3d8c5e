"""The optional compiled module (everything else is in pyproject.toml): `training/_leaf.pyx`, the
Hoeffding tree leaves' per-record arithmetic. Without a C compiler the install goes on without it
and `training.hoeffding` runs the same operations in Python."""

from setuptools import Extension, setup

# -fno-builtin-pow: libm's pow for x ** 2, as CPython calls it (gcc would make it x * x, which may
# round differently); -ffp-contract=off: no fused multiply-adds. Results stay bit-identical.
setup(ext_modules=[Extension("training._leaf", ["training/_leaf.pyx"], optional=True,
                             extra_compile_args=["-O2", "-fno-builtin-pow", "-ffp-contract=off"])])
