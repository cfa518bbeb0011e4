"""The package's metadata lives in setup.cfg; this file only declares the optional C extension
(gearmgr/_speedups.c, the worker's job path: see docs/architecture.md). ``optional=True``:
where it cannot be compiled (no C compiler or no Python headers) the install goes on without it
and gearmgr runs its pure-Python codec."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gearmgr._speedups",
            ["gearmgr/_speedups.c", "gearmgr/_slots.c", "gearmgr/_serve.c"],
            depends=["gearmgr/_speedups.h"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
