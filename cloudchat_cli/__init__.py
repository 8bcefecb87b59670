"""cloudchat-cli: the command line for CloudChat's Unified Developer API."""

__version__ = "0.1.0"
