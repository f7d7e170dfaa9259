"""Small helpers for sentences people read: counts with the right plural."""


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """ "1 run", "2 runs", "0 runs", "1,200 runs"."""
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"
