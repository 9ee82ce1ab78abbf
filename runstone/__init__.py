"""runstone: track machine-learning runs so that any run can be recreated exactly."""
from runstone._version import __version__
