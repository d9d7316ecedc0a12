"""Version policies (latest N, all, specific) and version-label resolution."""

from __future__ import annotations

from collections.abc import Sequence

from service.settings import ModelSettings


def wanted_versions(available: Sequence[int], settings: ModelSettings) -> set[int]:
    """The versions the policy wants served, out of those present on disk."""
    ordered = sorted(available)
    if settings.version_policy == "all":
        return set(ordered)
    if settings.version_policy == "specific":
        return set(ordered) & set(settings.versions)
    return set(ordered[-settings.num_versions :])
