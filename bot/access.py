"""Who may run checks where: per cluster, allowed channels and users (empty means everyone)."""

from __future__ import annotations

from bot.config import ClusterConfig, Config


def allowed(cluster: ClusterConfig, user: str, channel: str, user_name: str = "", channel_name: str = "") -> bool:
    # Config may name channels and users by id or by name; ids are what every Slack payload carries.
    channels = {channel, channel_name, f"#{channel_name}"} - {"", "#"}
    users = {user, user_name, f"@{user_name}"} - {"", "@"}
    return ((not cluster.allowed_channels or bool(channels & set(cluster.allowed_channels)))
            and (not cluster.allowed_users or bool(users & set(cluster.allowed_users))))


def usable_clusters(config: Config, user: str, channel: str, user_name: str = "", channel_name: str = "") -> list[str]:
    return [name for name, cluster in config.clusters.items()
            if allowed(cluster, user, channel, user_name, channel_name)]
