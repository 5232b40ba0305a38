"""The package version (one place: `divjax.__version__`, the wheel, `divjax --version`)."""

__version__ = "0.2.0"
