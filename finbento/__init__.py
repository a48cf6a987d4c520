"""finbento: train, register, package and serve a personal-finance app's models with BentoML."""

__version__ = "0.1.0"
