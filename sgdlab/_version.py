"""The installed sgdlab version (read once from the package metadata)."""

from functools import cache


@cache
def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("sgdlab")
    except PackageNotFoundError:  # a source tree used without installing
        return "0.0.0+unknown"
