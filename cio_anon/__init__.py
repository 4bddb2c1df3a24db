"""cio-anon: Customer.io's anonymous activity and identity merging, reproduced locally."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed metadata when first asked for (reading it
    costs a noticeable part of start-up, and most commands never need it)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("cio-anon")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
