"""Vision layers."""

__all__ = []
