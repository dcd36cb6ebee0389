"""Words for people: a count with its noun in the right number ("1 image", "2 images")."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and the noun, singular for exactly one: "1 repository", "3 repositories"."""
    if count == 1:
        return f"1 {noun}"
    if plural is None:
        consonant_y = noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u")
        plural = f"{noun[:-1]}ies" if consonant_y else f"{noun}s"
    return f"{count} {plural}"
