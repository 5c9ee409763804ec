"""The agent's action functions by name, for tests that run them in-process."""

from pyvirtualdomain.actions.migrate import migrate_from, migrate_to
from pyvirtualdomain.actions.monitor import monitor
from pyvirtualdomain.actions.start import start
from pyvirtualdomain.actions.stop import stop
from pyvirtualdomain.actions.validate import validate_all

__all__ = ["migrate_from", "migrate_to", "monitor", "start", "stop", "validate_all"]
