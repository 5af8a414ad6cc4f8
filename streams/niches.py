"""Niche keys: the configured attributes of an event, as a stable human-readable string. Pure."""

from __future__ import annotations

from collections.abc import Mapping

SEPARATOR = "|"


class MissingAttribute(ValueError):
    """The event lacks an attribute the niche definition needs."""


def niche_of(attrs: Mapping[str, str], region: str, attributes: tuple[str, ...],
             size_bands: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Return (key, niche) for an event's attributes and region.

    The niche dict is what triggers carry: the configured attributes, with `size_band` published
    under the name `size` (the band's name) as the trigger contract names it.
    """
    niche: dict[str, str] = {}
    for name in attributes:
        if name == "region":
            value = region
        elif name == "size_band":
            size = attrs.get("size")
            if not size:
                raise MissingAttribute("size")
            value = size_bands.get(size, size)
            name = "size"
        else:
            value = attrs.get(name, "")
            if not value:
                raise MissingAttribute(name)
        niche[name] = value.replace(SEPARATOR, "/")
    return SEPARATOR.join(niche.values()), niche
