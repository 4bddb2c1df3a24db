"""cio-anon: Customer.io's anonymous activity and identity merging, reproduced locally."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cio-anon")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
