"""cio-anon: Customer.io's anonymous activity and identity merging, reproduced locally."""

__version__ = "0.1.0"
