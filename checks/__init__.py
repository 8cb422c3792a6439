"""meshbot's diagnostic checks: pure functions over a snapshot of one cluster.

This package knows nothing of Slack, the queue or the bot. Entry points: ``checks.service.run_on_cluster``
(connect and run), ``checks.runner.select`` (targets to checks) and ``checks.catalog.ALL_CHECKS``.
"""
