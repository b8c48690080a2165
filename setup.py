"""Package list for setuptools; everything else lives in pyproject.toml.

The top-level resources/ folder ships as the package ``imemviz._resources``
(see ``package-dir`` in pyproject.toml). pyproject's ``packages.find`` cannot
add a package that lives outside the imemviz/ tree, hence this file.
"""

from setuptools import find_namespace_packages, find_packages, setup

setup(
    packages=[
        *find_packages(include=["imemviz", "imemviz.*"]),
        "imemviz._resources",
        *(
            f"imemviz._resources.{p}"
            for p in find_namespace_packages(
                where="resources", exclude=["__pycache__", "*.__pycache__"]
            )
        ),
    ],
)
