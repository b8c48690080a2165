"""Data files shipped inside the package as ``imemviz._resources`` (see pyproject.toml)."""
