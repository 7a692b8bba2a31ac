"""The queue dashboard: ``mailstrom-py dashboard`` serves pages (and their JSON)
that show how mail flows, which destinations defer and why, what failed and
with what reply; and, with a token, kicks, holds, releases and drops messages.

It reads the queue only through the queue-administration methods and
``status``/``email`` (:class:`QueueSource`), so it serves any storage that
offers them. The server is the standard library's; the pages are rendered here
(the chart as inline SVG) with one style sheet and one small script as package
data, and no build step.
"""

from .app import Dashboard, Request, Response
from .guard import Guard, dashboard_hosts
from .server import DashboardServer
from .source import QueueSource
from .views import Options

__all__ = [
    "Dashboard",
    "DashboardServer",
    "Guard",
    "Options",
    "QueueSource",
    "Request",
    "Response",
    "dashboard_hosts",
]
