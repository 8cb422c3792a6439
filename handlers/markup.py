"""Quoting what a person typed back into a Slack message."""


def escape_mrkdwn(text: str) -> str:
    """``text`` shown as typed: Slack's three control characters escaped, so no `<!channel>`, `<!here>`,
    `<!subteam^…>` or `<@U…>` in it can ping anyone; Slack displays the escapes as the characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
