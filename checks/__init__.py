"""meshbot's diagnostic checks: pure functions over a snapshot of one cluster.

This package knows nothing of Slack, the queue or the bot; ``checks.runner`` is its entry point.
"""
